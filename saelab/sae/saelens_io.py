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
from typing import Any

import numpy as np

from saelab.runtime.rundir import RunDir
from saelab.sae.config import ComputeDtype, SAEConfig
from saelab.sae.formats import FORMATS, LoadOptions, detect, load
from saelab.sae.formats import saelens as saelens_format
from saelab.sae.formats.saelens import CFG_FILE, WEIGHTS_FILE
from saelab.sae.loaded import LoadedSAE
from saelab.sae.params import SAEParams
from saelab.sae.registry import get_architecture

__all__ = [
    "CFG_FILE",
    "WEIGHTS_FILE",
    "saelens_architecture",
    "save_saelens",
    "load_saelens",
    "load_sae",
    "sae_dir",
    "sae_files",
]
SAELENS_FORMAT = "6.0.0"  # the SAELens config layout we write (metadata nested); older layouts still load


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
        **({"d_out": cfg.resolved_d_out} if cfg.is_transcoder else {}),
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
    (naming the tensor) when a weight is NaN or Inf. See saelab.sae.formats.saelens for the fields honoured."""
    return saelens_format.load(Path(path))


def load_sae(
    path: str | Path,
    *,
    norm_scaling_factor: float | None = None,
    runtime_norm: bool = False,
    compute_dtype: ComputeDtype | None = None,
    metadata: dict[str, Any] | None = None,
) -> LoadedSAE:
    """An SAE from a training run (its `sae/` export) or a folder in any format of saelab.sae.formats
    (SAELens, Gemma Scope, Llama Scope, sparsify), detected from the files it holds.

    norm_scaling_factor: the dataset constant of a SAELens `expected_average_only_in` SAE (folded into the
    weights); runtime_norm: accept a per-token normalisation (constant_norm_rescale, layer_norm), which only
    LoadedSAE.encode / decode apply; compute_dtype: override the matmul dtype the stored dtype implies;
    metadata: model_name / hook_name for files that do not state them (the file's own values win).
    """
    opts = LoadOptions(norm_scaling_factor, runtime_norm, compute_dtype, dict(metadata or {}))
    return load(sae_dir(path), opts)


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


def sae_files(path: str | Path) -> tuple[Path, ...]:
    """The files the SAE `path` names is made of (a SAELens-format directory: cfg.json and weights; a run: its
    export; another format's folder: that format's files)."""
    d = sae_dir(path)
    fmt = detect(d) if d.is_dir() else FORMATS["saelens"]
    return tuple(d / f for f in fmt.files)
