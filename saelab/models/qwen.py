"""Qwen2 / Qwen2.5 and Qwen3: the Llama block (RMSNorm, RoPE, grouped-query attention, SwiGLU) with
Qwen2's q/k/v biases, or Qwen3's RMSNorm over d_head on every query and key head before rotary (and its
optional `attention_bias` on all four projections). Sliding windows, when on, apply per layer.

Block: x += o(attn(rope(qn(q(n1(x)))), rope(kn(k(n1(x)))), v(n1(x)))); x += down(silu(gate(n2(x))) * up(n2(x))).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models import llama
from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.kv_cache import keys_and_mask
from saelab.models.layers import apply_rope, attend, project_heads, rms_norm, rope_inv_freq

Getter = Callable[[str], np.ndarray]

embed = llama.embed
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


def block(
    p: dict,
    cfg: ModelConfig,
    layer: int,
    x: jax.Array,
    positions: jax.Array,
    pad_mask: jax.Array,
    ctx: HookContext,
) -> jax.Array:
    pre = f"blocks.{layer}."
    x = ctx(pre + "hook_resid_pre", x)  # (batch, seq, d_model)
    h = rms_norm(x, p["ln1"], cfg.norm_eps)
    q = jnp.einsum("bsm,mhd->bshd", h, p["W_Q"])  # (batch, seq, heads, d_head)
    k = jnp.einsum("bsm,mhd->bshd", h, p["W_K"])  # (batch, seq, kv_heads, d_head)
    v = jnp.einsum("bsm,mhd->bshd", h, p["W_V"])
    if cfg.attention_bias:
        q, k, v = q + p["b_Q"], k + p["b_K"], v + p["b_V"]
    if cfg.qk_norm:
        q, k = rms_norm(q, p["q_norm"], cfg.norm_eps), rms_norm(k, p["k_norm"], cfg.norm_eps)
    inv_freq = rope_inv_freq(cfg)
    q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
    window = cfg.sliding_window if cfg.is_sliding(layer) else None
    k, v, mask = keys_and_mask(ctx, layer, k, v, pad_mask, positions, window)
    z = ctx(pre + "attn.hook_z", attend(q, k, v, mask, cfg.d_head**-0.5))  # (batch, seq, heads, d_head)
    attn_out = ctx(pre + "hook_attn_out", project_heads(z, p["W_O"], p.get("b_O"), ctx, pre))
    x = ctx(pre + "hook_resid_mid", x + attn_out)
    h = ctx(pre + "ln2.hook_normalized", rms_norm(x, p["ln2"], cfg.norm_eps))  # the MLP input
    act = ctx(pre + "mlp.hook_post", jax.nn.silu(h @ p["W_gate"]) * (h @ p["W_up"]))  # (batch, seq, d_mlp)
    mlp_out = ctx(pre + "hook_mlp_out", act @ p["W_down"])
    return ctx(pre + "hook_resid_post", x + mlp_out)
