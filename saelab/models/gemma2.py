"""Gemma 2 (the atoms paper's model): Llama-like blocks with pre- and post-norms around attention and MLP,
attention and final-logit soft-capping, alternating sliding-window / global attention, embeddings scaled by
sqrt(d_model), a query pre-attention scalar, GeGLU MLP and (1 + w) RMSNorm weights.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.kv_cache import keys_and_mask
from saelab.models.layers import (
    apply_rope,
    attend,
    gelu_tanh,
    project_heads,
    rms_norm,
    rope_inv_freq,
)

Getter = Callable[[str], np.ndarray]
_NORMS = {
    "ln1": "input_layernorm",
    "ln1_post": "post_attention_layernorm",
    "ln2": "pre_feedforward_layernorm",
    "ln2_post": "post_feedforward_layernorm",
}


def params_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> dict:
    """Hugging Face Gemma2ForCausalLM tensor names -> saelab params (norm weights stored as w, used as 1 + w)."""
    d, h, kv, dh = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head

    def a(x: np.ndarray) -> jax.Array:
        return jnp.asarray(x, dtype=dtype)

    layers = []
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        layer = {k: a(get(p + v + ".weight")) for k, v in _NORMS.items()}
        layer |= {
            "W_Q": a(get(p + "self_attn.q_proj.weight").T.reshape(d, h, dh)),
            "W_K": a(get(p + "self_attn.k_proj.weight").T.reshape(d, kv, dh)),
            "W_V": a(get(p + "self_attn.v_proj.weight").T.reshape(d, kv, dh)),
            "W_O": a(get(p + "self_attn.o_proj.weight").T.reshape(h, dh, d)),
            "W_gate": a(get(p + "mlp.gate_proj.weight").T),
            "W_up": a(get(p + "mlp.up_proj.weight").T),
            "W_down": a(get(p + "mlp.down_proj.weight").T),
        }
        layers.append(layer)
    return {"embed": a(get("model.embed_tokens.weight")), "layers": layers, "ln_final": a(get("model.norm.weight"))}


def embed(params: dict, cfg: ModelConfig, tokens: jax.Array, positions: jax.Array) -> jax.Array:
    x = params["embed"][tokens]
    return x * jnp.asarray(cfg.d_model**0.5, dtype=x.dtype)


def _norm(x: jax.Array, w: jax.Array, cfg: ModelConfig) -> jax.Array:
    return rms_norm(x, w, cfg.norm_eps, offset=1.0)


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
    h = _norm(x, p["ln1"], cfg)
    q = jnp.einsum("bsm,mhd->bshd", h, p["W_Q"])
    k = jnp.einsum("bsm,mhd->bshd", h, p["W_K"])
    v = jnp.einsum("bsm,mhd->bshd", h, p["W_V"])
    inv_freq = rope_inv_freq(cfg)
    q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
    window = cfg.sliding_window if cfg.is_sliding(layer) else None
    k, v, mask = keys_and_mask(ctx, layer, k, v, pad_mask, positions, window)
    scale = cfg.query_pre_attn_scalar**-0.5
    z = ctx(pre + "attn.hook_z", attend(q, k, v, mask, scale, cfg.attn_logit_softcap))
    # hook_attn_out is what enters the residual stream: after the post-attention norm.
    attn_out = ctx(pre + "hook_attn_out", _norm(project_heads(z, p["W_O"], None, ctx, pre), p["ln1_post"], cfg))
    x = ctx(pre + "hook_resid_mid", x + attn_out)
    h = ctx(pre + "ln2.hook_normalized", _norm(x, p["ln2"], cfg))  # the MLP input
    act = ctx(pre + "mlp.hook_post", gelu_tanh(h @ p["W_gate"]) * (h @ p["W_up"]))  # (batch, seq, d_mlp)
    mlp_out = ctx(pre + "hook_mlp_out", _norm(act @ p["W_down"], p["ln2_post"], cfg))
    return ctx(pre + "hook_resid_post", x + mlp_out)


def unembed(params: dict, cfg: ModelConfig, x: jax.Array) -> jax.Array:
    x = _norm(x, params["ln_final"], cfg)
    logits = jnp.einsum("bsm,vm->bsv", x, params["embed"], preferred_element_type=jnp.float32)
    if cfg.final_logit_softcap is not None:
        logits = jnp.tanh(logits / cfg.final_logit_softcap) * cfg.final_logit_softcap
    return logits
