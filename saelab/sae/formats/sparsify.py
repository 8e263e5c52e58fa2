"""EleutherAI sparsify SAEs: `<hookpoint>/cfg.json` + `<hookpoint>/sae.safetensors` (sparsify/sparse_coder.py).

Tensors: encoder.weight (d_sae, d_in), encoder.bias (d_sae,), W_dec (d_sae, d_in), b_dec (d_in,). Encode is
`topk(ReLU((x - b_dec) @ encoder.weight.T + encoder.bias), k)` and decode `sum_i a_i W_dec[i] + b_dec`
(SparseCoder.encode / decode): saelab's TopK SAE with apply_b_dec_to_input, W_enc = encoder.weight.T
(ReLU before or after the top-k gives the same dense codes). `multi_topk` (a training loss on the top 4k)
and `normalize_decoder` (unit-norm rows kept in training) do not change inference and are recorded only.
Refused, naming the field: `activation: groupmax`, `transcode: true` (the input is another hook and not
centred; see saelab's transcoders) and `skip_connection: true` (a W_skip saelab's SAEParams lacks).
The hookpoint is a transformers module name: `layers.N` / `h.N` / `gpt_neox.layers.N` outputs are TransformerLens
`blocks.N.hook_resid_post`, `embed_tokens` is `hook_embed`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from saelab.sae.formats.base import DEFAULT, LoadOptions, build, compute_dtype_of
from saelab.sae.loaded import InputNorm, LoadedSAE
from saelab.sae.topk import TopKConfig

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
_LAYER = re.compile(r"^(?:model\.|gpt_neox\.|transformer\.)?(?:layers|h)[._](\d+)$")
_REFUSED = {"transcode": True, "skip_connection": True}


def detect(path: Path) -> bool:
    return (path / CFG_FILE).exists() and (path / WEIGHTS_FILE).exists()


def load(path: Path, opts: LoadOptions = DEFAULT) -> LoadedSAE:
    """A sparsify SAE from one hookpoint folder."""
    from safetensors import safe_open

    raw = json.loads((path / CFG_FILE).read_text())
    for field, bad in _REFUSED.items():
        if raw.get(field) == bad:
            raise ValueError(f"{path / CFG_FILE}: sparsify {field}={json.dumps(bad)} is not supported by this loader")
    if raw.get("activation", "topk") != "topk":
        act = raw["activation"]
        raise ValueError(f"{path / CFG_FILE}: sparsify activation={act!r} is not supported; supported: topk")
    d_in = int(raw["d_in"])
    d_sae = int(raw.get("num_latents") or d_in * raw.get("expansion_factor", 32))
    with safe_open(str(path / WEIGHTS_FILE), framework="numpy") as f:
        names = set(f.keys())
        need = {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}
        if not need <= names:
            raise ValueError(f"{path / WEIGHTS_FILE} lacks tensors {sorted(need - names)}")
        w = {k: np.asarray(f.get_tensor(k), np.float32) for k in need}
    dtype = _stored_dtype(path / WEIGHTS_FILE)
    W_dec = w["W_dec"]
    if W_dec.shape == (d_in, d_sae) and d_in != d_sae:  # a transposed decoder, as some exports hold it
        W_dec = W_dec.T
    tensors = {"W_enc": w["encoder.weight"].T, "b_enc": w["encoder.bias"], "W_dec": W_dec, "b_dec": w["b_dec"]}
    cfg = TopKConfig(
        d_in=d_in,
        d_sae=d_sae,
        k=int(raw.get("k", 32)),
        apply_b_dec_to_input=True,
        compute_dtype=compute_dtype_of(dtype, str(path / WEIGHTS_FILE)),
    )
    meta = {
        "hook_name": hook_of(path.name),
        "sparsify_hookpoint": path.name,
        "multi_topk": bool(raw.get("multi_topk", False)),
        "normalize_decoder": bool(raw.get("normalize_decoder", True)),
    }
    return build(tensors, cfg, meta, InputNorm(), "sparsify", opts, str(path))


def hook_of(hookpoint: str) -> str | None:
    """TransformerLens hook name of a sparsify hookpoint (None when it has no saelab equivalent)."""
    if hookpoint in ("embed_tokens", "embed_in", "wte"):
        return "hook_embed"
    m = _LAYER.match(hookpoint)
    return f"blocks.{m.group(1)}.hook_resid_post" if m else None


def hookpoints(root: Path) -> list[str]:
    """The hookpoint folders under a sparsify repository root."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and detect(p))


def _stored_dtype(path: Path) -> str:
    """The dtype the safetensors header records for the first tensor (bf16 stays visible this way)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    first = next(v for k, v in header.items() if k != "__metadata__")
    names = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}
    return names.get(first["dtype"], first["dtype"])
