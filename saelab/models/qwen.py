"""Qwen2 / Qwen2.5 and Qwen3: the Llama block (RMSNorm, RoPE, grouped-query attention, SwiGLU) with
Qwen2's q/k/v biases, or Qwen3's RMSNorm over d_head on every query and key head before rotary (and its
optional `attention_bias` on all four projections). Sliding windows, when on, apply per layer.

Block: x += o(attn(rope(qn(q(n1(x)))), rope(kn(k(n1(x)))), v(n1(x)))); x += down(silu(gate(n2(x))) * up(n2(x))).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from saelab.models import llama
from saelab.models.config import ModelConfig

Getter = Callable[[str], np.ndarray]

embed = llama.embed
block = llama.block  # biases and q/k norm are config-driven in layers.attention
unembed = llama.unembed


def params_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> dict:
    """Hugging Face Qwen2ForCausalLM / Qwen3ForCausalLM tensor names -> saelab params: Llama's (biases
    included), plus Qwen3's q/k norm weights (d_head,)."""
    params = llama.params_from_hf(get, cfg, dtype)
    if cfg.qk_norm:
        for i, layer in enumerate(params["layers"]):
            p = f"model.layers.{i}.self_attn."
            layer["q_norm"] = jnp.asarray(get(p + "q_norm.weight"), dtype=dtype)
            layer["k_norm"] = jnp.asarray(get(p + "k_norm.weight"), dtype=dtype)
    return params
