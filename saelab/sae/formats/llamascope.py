"""Llama Scope (He et al. 2024, fnlp/Llama3_1-8B-Base-LX{R,A,M}-{8,32}x): `hyperparams.json` +
`checkpoints/final.safetensors`, converted as SAELens's llama_scope loader does
(sae_lens/loading/pretrained_sae_loaders.py, get_llama_scope_config_from_hf):

- encoder.weight (d_sae, d_in) and decoder.weight (d_in, d_sae) are nn.Linear weights: W_enc and W_dec are
  their transposes; encoder.bias -> b_enc, decoder.bias -> b_dec; no pre-encoder bias;
- the SAE was trained on activations times s = sqrt(d_model) / dataset_average_activation_norm.in
  (normalize_activations expected_average_only_in): s is folded into the weights, and the scalar
  jump_relu_threshold becomes a per-latent threshold jump_relu_threshold * s, as in SAELens;
- weights are bfloat16 (bfloat16 matmuls), the hook is hook_point_in, the model meta-llama/Llama-3.1-8B.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from saelab.sae.formats.base import DEFAULT, LoadOptions, build
from saelab.sae.jumprelu import JumpReLUConfig
from saelab.sae.loaded import InputNorm, LoadedSAE

CFG_FILE = "hyperparams.json"
WEIGHTS_FILE = "checkpoints/final.safetensors"
MODEL = "meta-llama/Llama-3.1-8B"


def detect(path: Path) -> bool:
    return (path / CFG_FILE).exists() and (path / WEIGHTS_FILE).exists()


def load(path: Path, opts: LoadOptions = DEFAULT) -> LoadedSAE:
    """A Llama Scope SAE from its folder (hyperparams.json and checkpoints/final.safetensors)."""
    from safetensors.numpy import load_file

    raw = json.loads((path / CFG_FILE).read_text())
    if raw.get("hook_point_in") != raw.get("hook_point_out", raw.get("hook_point_in")):
        raise ValueError(
            f"{path / CFG_FILE}: hook_point_in={raw['hook_point_in']!r} differs from "
            f"hook_point_out={raw['hook_point_out']!r}: a transcoder, which this loader does not read"
        )
    d_in, d_sae = int(raw["d_model"]), int(raw["d_sae"])
    s = opts.norm_scaling_factor or math.sqrt(d_in) / float(raw["dataset_average_activation_norm"]["in"])
    w = load_file(str(path / WEIGHTS_FILE))
    tensors = {
        "W_enc": np.asarray(w["encoder.weight"], np.float32).T,
        "b_enc": np.asarray(w["encoder.bias"], np.float32),
        "W_dec": np.asarray(w["decoder.weight"], np.float32).T,
        "b_dec": np.asarray(w["decoder.bias"], np.float32),
        "threshold": np.full(d_sae, float(raw["jump_relu_threshold"]) * s, np.float32),
    }
    cfg = JumpReLUConfig(d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=False, compute_dtype="bfloat16")
    meta = {"hook_name": raw["hook_point_in"], "model_name": MODEL, "prepend_bos": True, "context_size": 1024}
    return build(tensors, cfg, meta, InputNorm("none", s, "expected_average_only_in"), "llamascope", opts, str(path))
