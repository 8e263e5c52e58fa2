"""Gemma Scope (Lieberum et al. 2024): a `params.npz` with W_enc (d_in, d_sae), W_dec (d_sae, d_in), b_enc,
b_dec and a per-latent threshold, a JumpReLU SAE on raw activations:

    f(x) = ReLU(x @ W_enc + b_enc) * 1[x @ W_enc + b_enc > threshold],    x_hat = f @ W_dec + b_dec

with no pre-encoder bias (apply_b_dec_to_input false). The file names no hook or model; they come from the
folder (`layer_{L}/width_{W}/average_l0_{N}` in google/gemma-scope-{2b,9b,27b}-pt-{res,mlp,att}), from a
release in saelab.sae.releases, or from LoadOptions.metadata. Embedding SAEs had their input divided by
sqrt(d_in) in training; SAELens folds that into the weights and so does this loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from saelab.sae.formats.base import DEFAULT, LoadOptions, build
from saelab.sae.jumprelu import JumpReLUConfig
from saelab.sae.loaded import InputNorm, LoadedSAE

PARAMS_FILE = "params.npz"
TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


def detect(path: Path) -> bool:
    return (path / PARAMS_FILE).exists()


def load(path: Path, opts: LoadOptions = DEFAULT) -> LoadedSAE:
    """A Gemma Scope SAE from a folder holding params.npz."""
    with np.load(path / PARAMS_FILE) as data:
        w = {("W_" + k[2:] if k.startswith("w_") else k): np.asarray(data[k], np.float32) for k in data.files}
    missing = [k for k in TENSORS if k not in w]
    if missing:
        raise ValueError(f"{path / PARAMS_FILE} lacks tensors {missing}; a Gemma Scope file holds {list(TENSORS)}")
    scale = w.pop("scaling_factor", None)
    if scale is not None and not np.allclose(scale, 1.0):
        raise ValueError(f"{path / PARAMS_FILE}: scaling_factor other than 1 is not supported")
    d_in, d_sae = w["W_enc"].shape
    cfg = JumpReLUConfig(d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=False)
    meta = {"prepend_bos": True, "context_size": 1024} | {"hook_name": hook_of(path, opts.metadata.get("hook_name"))}
    if "embedding" in path.parts:  # SAELens's gemma_2 loader: embeddings were trained divided by sqrt(d_in)
        w |= {"W_enc": w["W_enc"] / np.sqrt(d_in), "W_dec": w["W_dec"] * np.sqrt(d_in)}
    return build(w, cfg, meta, InputNorm(), "gemmascope", opts, str(path))


def hook_of(path: Path, given: Any = None) -> str | None:
    """The TransformerLens hook a Gemma Scope folder is for, when its path says (resid_post for `-res` repos)."""
    if given:
        return given
    m = re.search(r"layer_(\d+)", str(path))
    text = str(path)
    if m is None:
        return "hook_embed" if "embedding" in path.parts else None
    layer = m.group(1)
    if "-mlp" in text:
        return f"blocks.{layer}.hook_mlp_out"
    if "-att" in text:
        return f"blocks.{layer}.attn.hook_z"
    if "-res" in text:
        return f"blocks.{layer}.hook_resid_post"
    return None
