"""Writers of each published SAE format with random weights, and NumPy float64 references of their formulas.

The references restate the formats' own code (SAELens sae_lens/saes/*.py, Gemma Scope's JumpReLU, sparsify's
SparseCoder.encode/decode, SAELens's llama_scope conversion), independent of saelab's implementation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

D_IN, D_SAE = 8, 32


def rand(seed: int, d_in: int = D_IN, d_sae: int = D_SAE) -> dict[str, np.ndarray]:
    """Random SAELens-named float32 tensors; thresholds spread so some latents pass and some do not."""
    r = np.random.default_rng(seed)
    f = lambda *s: r.normal(size=s).astype(np.float32)
    return {
        "W_enc": f(d_in, d_sae),
        "b_enc": 0.3 * f(d_sae),
        "W_dec": f(d_sae, d_in),
        "b_dec": 0.5 * f(d_in),
        "threshold": np.abs(f(d_sae)),
    }


def write_saelens(path: Path, w: dict[str, np.ndarray], cfg: dict, dtype: str = "float32") -> Path:
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    cast = {"float32": np.float32, "bfloat16": __import__("ml_dtypes").bfloat16}[dtype]
    save_file({k: np.asarray(v).astype(cast) for k, v in w.items()}, str(path / "sae_weights.safetensors"))
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


def saelens_cfg(architecture: str = "standard", **over) -> dict:
    """A SAELens 6.x cfg.json (nested metadata)."""
    meta = {"model_name": "gpt2-small", "hook_name": "blocks.3.hook_resid_pre", "hook_head_index": None,
            "prepend_bos": True, "context_size": 128, "sae_lens_version": "6.5.1"}  # fmt: skip
    return {"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu",
            "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
            "metadata": meta} | over  # fmt: skip


def write_gemmascope(path: Path, w: dict[str, np.ndarray]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "params.npz", **w)
    return path


def write_sparsify(path: Path, w: dict[str, np.ndarray], cfg: dict, dtype=np.float32) -> Path:
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    tensors = {"encoder.weight": w["W_enc"].T, "encoder.bias": w["b_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"]}
    save_file({k: np.ascontiguousarray(v).astype(dtype) for k, v in tensors.items()}, str(path / "sae.safetensors"))
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


def sparsify_cfg(**over) -> dict:
    return {"activation": "topk", "expansion_factor": 4, "normalize_decoder": True, "num_latents": D_SAE, "k": 5,
            "multi_topk": True, "skip_connection": False, "transcode": False, "d_in": D_IN} | over  # fmt: skip


def write_llamascope(path: Path, w: dict[str, np.ndarray], threshold: float, norm_in: float) -> Path:
    from safetensors.numpy import save_file

    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    tensors = {"encoder.weight": w["W_enc"].T, "encoder.bias": w["b_enc"], "decoder.weight": w["W_dec"].T,
               "decoder.bias": w["b_dec"]}  # fmt: skip
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path / "checkpoints/final.safetensors"))
    hp = {"d_model": D_IN, "d_sae": D_SAE, "hook_point_in": "blocks.5.hook_resid_post",
          "hook_point_out": "blocks.5.hook_resid_post", "jump_relu_threshold": threshold,
          "dataset_average_activation_norm": {"in": norm_in, "out": norm_in}}  # fmt: skip
    (path / "hyperparams.json").write_text(json.dumps(hp))
    return path


# ---- references (float64) ----


def f64(w: dict) -> dict:
    return {k: np.asarray(v, np.float64) for k, v in w.items()}


def act(pre: np.ndarray, architecture: str, k: int = 0, threshold: np.ndarray | None = None) -> np.ndarray:
    """SAELens's activation functions: ReLU; TopK (top k of the pre-activations, then ReLU); JumpReLU."""
    if architecture == "standard":
        return np.maximum(pre, 0)
    if architecture == "topk":
        out = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=1)[:, :k]
        np.put_along_axis(out, idx, np.maximum(np.take_along_axis(pre, idx, 1), 0), 1)
        return out
    if architecture == "jumprelu":
        return np.maximum(pre, 0) * (pre > threshold)
    raise ValueError(architecture)
