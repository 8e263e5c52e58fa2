"""SAELens-format SAEs on disk: `cfg.json` + `sae_weights.safetensors`, written and read.

An export is what SAELens's `SAE.load_from_disk` loads (standard / topk / jumprelu architectures), and a
SAELens-format directory (ours or, for example, Gemma Scope converted by SAELens) loads back as SAEParams
plus our SAEConfig. Input scaling used in training is folded into the weights before writing, so the
exported SAE works on raw activations. saelab's own fields ride along in `metadata`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from saelab.runtime.rundir import RunDir
from saelab.sae.config import SHARED_FIELDS, SAEConfig
from saelab.sae.params import SAEParams, check_finite
from saelab.sae.registry import ARCHITECTURES, get_architecture

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SAELENS_FORMAT = "6.0.0"  # the SAELens config layout we write (metadata nested); older layouts still load


class LoadedSAE(NamedTuple):
    params: SAEParams
    cfg: SAEConfig
    metadata: dict[str, Any]  # model_name, hook_name, context_size, store, ...


def saelens_architecture(cfg: SAEConfig) -> str:
    """Our architecture -> SAELens's inference architecture (BatchTopK is saved as JumpReLU, as SAELens does)."""
    return get_architecture(cfg.architecture).saelens_architecture(cfg)


def save_saelens(path: str | Path, params: SAEParams, cfg: SAEConfig, metadata: dict[str, Any]) -> Path:
    """Write params (already folded to raw-activation scale) and config; atomic per file."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    theirs = saelens_architecture(cfg)  # a SAELens name, not ours
    tensors = {k: np.asarray(v, np.float32) for k, v in params._asdict().items() if v is not None}
    if not cfg.uses_threshold:  # SAELens reads a threshold only for its JumpReLU SAEs and transcoders
        tensors.pop("threshold", None)
    if "W_skip" in tensors:
        tensors["W_skip"] = np.ascontiguousarray(tensors["W_skip"].T)  # SAELens: (d_out, d_in), x @ W_skip.T
    out = {
        "architecture": theirs,
        "d_in": cfg.d_in,
        **({"d_out": cfg.d_out} if cfg.is_transcoder else {}),
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            **metadata,
            "sae_lens_version": SAELENS_FORMAT,
            "sae_lens_training_version": None,
            "saelab_config": cfg.model_dump(mode="json"),
        },
    }
    if theirs == "topk" or (cfg.is_transcoder and "k" in get_architecture(cfg.architecture).saelens_keys):
        out |= {"k": cfg.k, "rescale_acts_by_decoder_norm": False}
    tmp = path / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path / WEIGHTS_FILE)
    tmp = path / (CFG_FILE + ".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    os.replace(tmp, path / CFG_FILE)
    return path


def load_saelens(path: str | Path) -> LoadedSAE:
    """Read a SAELens-format directory (ours or SAELens's own) into SAEParams and an SAEConfig; NonFiniteError
    (naming the tensor) when a weight is NaN or Inf."""
    from safetensors.numpy import load_file

    path = Path(path)
    for f in (CFG_FILE, WEIGHTS_FILE):
        if not (path / f).exists():
            raise FileNotFoundError(f"{path} is not a SAELens-format SAE directory: {f} is missing")
    raw = json.loads((path / CFG_FILE).read_text())
    meta = dict(raw.get("metadata") or {})
    for key in ("model_name", "hook_name", "hook_name_out", "context_size", "prepend_bos"):  # older: top level
        if key in raw and key not in meta:
            meta[key] = raw[key]
    ours = meta.pop("saelab_config", None)
    if ours is not None:
        cfg = SAEConfig(**_applicable(ours))
    else:
        cfg = _foreign_config(raw, path)
    w = load_file(str(path / WEIGHTS_FILE))
    missing = [k for k in ("W_enc", "b_enc", "W_dec", "b_dec") if k not in w]
    if missing:
        raise ValueError(f"{path / WEIGHTS_FILE} lacks tensors {missing}")
    t = w.get("threshold")
    if cfg.uses_threshold and t is None:
        raise ValueError(f"{path} is a {cfg.architecture} SAE without a threshold tensor")
    if cfg.skip and "W_skip" not in w:
        raise ValueError(f"{path} is a skip-transcoder without a W_skip tensor")
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    params = SAEParams(
        f32(w["W_enc"]),
        f32(w["b_enc"]),
        f32(w["W_dec"]),
        f32(w["b_dec"]),
        None if not cfg.uses_threshold else f32(np.broadcast_to(t, (cfg.d_sae,))),
        f32(w["W_skip"].T) if cfg.skip else None,  # SAELens stores (d_out, d_in)
    )
    check_finite(params, str(path))
    return LoadedSAE(params, cfg, meta)


def _foreign_config(raw: dict[str, Any], path: Path) -> SAEConfig:
    """Our SAEConfig for a SAELens cfg.json not written by saelab: an SAE by its `saelens_imports`, a transcoder
    by the SAELens transcoder class of the architecture that imports that class's SAE (relu for transcoder and
    skip_transcoder, jumprelu for jumprelu_transcoder)."""
    arch = raw.get("architecture", "standard")
    sae = {s: (a, False) for a in ARCHITECTURES.values() for s in a.saelens_imports}
    canonical = [
        a for a in ARCHITECTURES.values() if isinstance(a.saelens_name, str) and a.saelens_name in a.saelens_imports
    ]
    transcoders = {a.saelens_transcoder: (a, False) for a in canonical if a.saelens_transcoder}
    transcoders |= {a.saelens_skip_transcoder: (a, True) for a in canonical if a.saelens_skip_transcoder}
    if arch not in sae | transcoders:
        raise ValueError(
            f"SAELens architecture {arch!r} in {path} is not supported; supported: {sorted(sae)} "
            f"(transcoders: {sorted(transcoders)})"
        )
    entry, skip = (sae | transcoders)[arch]
    extra: dict[str, Any] = {key: raw[key] for key in entry.saelens_keys}
    if arch in transcoders:
        extra |= {"d_out": raw["d_out"], "skip": skip} if skip else {"d_out": raw["d_out"]}
    return SAEConfig(
        architecture=entry.name,
        d_in=raw["d_in"],
        d_sae=raw["d_sae"],
        apply_b_dec_to_input=raw.get("apply_b_dec_to_input", arch not in transcoders),
        **extra,
    )


def _applicable(dumped: dict[str, Any]) -> dict[str, Any]:
    """A saved SAEConfig dump (every field, defaults included) less the fields its architecture does not read,
    which SAEConfig would reject as set."""
    name = dumped.get("architecture", SAEConfig.model_fields["architecture"].default)
    if name not in ARCHITECTURES:
        return dumped  # SAEConfig names the unknown architecture
    keep = SHARED_FIELDS | ARCHITECTURES[name].fields
    return {k: v for k, v in dumped.items() if k in keep or k not in SAEConfig.model_fields}


def load_sae(path: str | Path) -> LoadedSAE:
    """An SAE from a SAELens-format directory or from a training run directory (its `sae/` export)."""
    return load_saelens(sae_dir(path))


def sae_dir(path: str | Path) -> Path:
    """The SAELens-format directory `path` names: itself, or the export of the training run it is."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SAE path {path} does not exist; give a run (checkpoints/NAME) or an SAE directory")
    if (path / CFG_FILE).exists():
        return path
    run = RunDir(path)
    if (run.sae / CFG_FILE).exists():
        return run.sae
    if run.is_run():
        raise FileNotFoundError(
            f"run {path} has no exported SAE yet (no {run.sae.name}/{CFG_FILE}); finish training with "
            f"`saelab train --resume {path}`"
        )
    return path  # load_saelens names the missing file


def sae_files(path: str | Path) -> tuple[Path, Path]:
    """(cfg.json, weights) of the SAE `path` names (a SAELens-format directory or a run): what it is made of."""
    d = sae_dir(path)
    return d / CFG_FILE, d / WEIGHTS_FILE
