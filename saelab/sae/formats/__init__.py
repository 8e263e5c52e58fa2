"""SAE file formats by name, detected from the files a folder holds; adding one is a module and a line.

saelens (saelab's own exports too): cfg.json + sae_weights.safetensors; sparsify: cfg.json + sae.safetensors
(one folder per hookpoint); gemmascope: params.npz; llamascope: hyperparams.json + checkpoints/final.safetensors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from saelab.sae.formats import gemmascope, llamascope, saelens, sparsify
from saelab.sae.formats.base import DEFAULT, LoadOptions
from saelab.sae.loaded import LoadedSAE


class Format(NamedTuple):
    name: str
    detect: Callable[[Path], bool]  # does this folder hold an SAE in this format
    load: Callable[[Path, LoadOptions], LoadedSAE]
    files: tuple[str, ...]  # what it is made of, relative to its folder

    def describe(self) -> str:
        return " + ".join(self.files)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("saelens", saelens.detect, saelens.load, (saelens.CFG_FILE, saelens.WEIGHTS_FILE)),
        Format("sparsify", sparsify.detect, sparsify.load, (sparsify.CFG_FILE, sparsify.WEIGHTS_FILE)),
        Format("gemmascope", gemmascope.detect, gemmascope.load, (gemmascope.PARAMS_FILE,)),
        Format("llamascope", llamascope.detect, llamascope.load, (llamascope.CFG_FILE, llamascope.WEIGHTS_FILE)),
    )
}


def detect(path: Path) -> Format:
    """The format of the SAE folder `path`; FileNotFoundError listing what each format needs otherwise."""
    for fmt in FORMATS.values():
        if fmt.detect(path):
            return fmt
    subs = sparsify.hookpoints(path) if path.is_dir() else []
    if subs:
        more = ", ..." if len(subs) > 8 else ""
        raise FileNotFoundError(
            f"{path} is a sparsify repository with one SAE per hookpoint; give one, e.g. {path / subs[0]} "
            f"(hookpoints: {', '.join(subs[:8])}{more})"
        )
    if (path / saelens.CFG_FILE).exists():
        raise FileNotFoundError(
            f"{path} is not a complete SAE directory: {saelens.WEIGHTS_FILE} is missing (a SAELens folder holds "
            f"it beside cfg.json; a sparsify folder holds {sparsify.WEIGHTS_FILE})"
        )
    need = "; ".join(f"{f.name}: {f.describe()}" for f in FORMATS.values())
    raise FileNotFoundError(f"{path} holds no SAE in a known format ({need})")


def load(path: Path, opts: LoadOptions = DEFAULT) -> LoadedSAE:
    """The SAE in folder `path`, whatever its format."""
    return detect(path).load(path, opts)


__all__ = ["FORMATS", "Format", "LoadOptions", "detect", "load"]
