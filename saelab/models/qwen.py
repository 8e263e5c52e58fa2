"""Qwen2 / Qwen2.5 and Qwen3: the Llama block with Qwen2's q/k/v biases (no output bias), or Qwen3's RMSNorm
over d_head on every query and key head before rotary (and its optional `attention_bias` on all four
projections). Sliding windows apply only with `use_sliding_window`, to the layers from `max_window_layers` on.
"""

from __future__ import annotations

from typing import Any

from saelab.models import llama
from saelab.models.config import ModelConfig
from saelab.models.weights import Family


def config_from_hf(hf: dict[str, Any], name: str = "") -> ModelConfig:
    qwen3 = hf["model_type"] == "qwen3"
    c = llama.llama_like_config(hf, name, tie_default=False)
    bias = c["attention_bias"] if qwen3 else True
    n, window = c["n_layers"], c["sliding_window"] if hf.get("use_sliding_window") else None
    layer_types = hf.get("layer_types") if window is not None else None
    if window is not None and not layer_types:
        first = hf.get("max_window_layers", 0)
        layer_types = ["sliding_attention" if i >= first else "full_attention" for i in range(n)]
    c |= dict(sliding_window=window, attention_bias=bias)
    layer_types = tuple(layer_types) if layer_types else None
    return ModelConfig(family="qwen", **c, layer_types=layer_types, qk_norm=qwen3, attn_out_bias=qwen3 and bias)


FAMILY = Family("qwen", ("qwen2", "qwen3"), config_from_hf, llama.weights_from_hf)
