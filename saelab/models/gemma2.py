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
from saelab.models.layers import attention, gelu_tanh, hook, mlp, rms_norm

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


def embed(
    params: dict, cfg: ModelConfig, tokens: jax.Array, positions: jax.Array, ctx: HookContext | None = None
) -> jax.Array:
    x = params["embed"][tokens]  # (batch, seq, d_model)
    return hook(ctx, "hook_embed", x * jnp.asarray(cfg.d_model**0.5, dtype=x.dtype))


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
    attn = attention(p, cfg, layer, _norm(x, p["ln1"], cfg), positions, pad_mask, ctx, pre)
    # hook_attn_out is what enters the residual stream: after the post-attention norm.
    attn_out = ctx(pre + "hook_attn_out", _norm(attn, p["ln1_post"], cfg))
    x = ctx(pre + "hook_resid_mid", x + attn_out)
    h = ctx(pre + "ln2.hook_normalized", _norm(x, p["ln2"], cfg))  # the MLP input
    mlp_out = ctx(pre + "hook_mlp_out", _norm(mlp(p, h, gelu_tanh, ctx, pre), p["ln2_post"], cfg))
    return ctx(pre + "hook_resid_post", x + mlp_out)


def unembed(params: dict, cfg: ModelConfig, x: jax.Array, ctx: HookContext | None = None) -> jax.Array:
    x = hook(ctx, "ln_final.hook_normalized", _norm(x, params["ln_final"], cfg))
    logits = jnp.einsum("bsm,vm->bsv", x, params["embed"], preferred_element_type=jnp.float32)
    if cfg.final_logit_softcap is not None:
        logits = jnp.tanh(logits / cfg.final_logit_softcap) * cfg.final_logit_softcap
    return logits
