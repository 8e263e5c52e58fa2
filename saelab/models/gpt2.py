"""GPT-2 (the circuits paper's model): learned positions, LayerNorm, fused QKV, GELU (tanh) MLP, biases.

Block: x += proj(attn(qkv(ln_1(x)))); x += fc2(gelu(fc1(ln_2(x)))).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.layers import attention, gelu_tanh, hook, layer_norm, mlp

Getter = Callable[[str], np.ndarray]


def params_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> dict:
    """Hugging Face GPT2LMHeadModel tensor names (Conv1D weights are [in, out]) -> saelab params."""
    d, h, dh = cfg.d_model, cfg.n_heads, cfg.d_head

    def g(name: str) -> np.ndarray:
        try:
            return get("transformer." + name)
        except KeyError:
            return get(name)  # checkpoints saved from GPT2Model have no "transformer." prefix

    def a(x: np.ndarray) -> jax.Array:
        return jnp.asarray(x, dtype=dtype)

    layers = []
    for i in range(cfg.n_layers):
        p = f"h.{i}."
        w_qkv, b_qkv = g(p + "attn.c_attn.weight"), g(p + "attn.c_attn.bias")  # (d, 3d), (3d,)
        wq, wk, wv = np.split(w_qkv, 3, axis=1)
        bq, bk, bv = np.split(b_qkv, 3)
        layers.append(
            {
                "ln1_w": a(g(p + "ln_1.weight")),
                "ln1_b": a(g(p + "ln_1.bias")),
                "W_Q": a(wq.reshape(d, h, dh)),
                "W_K": a(wk.reshape(d, h, dh)),
                "W_V": a(wv.reshape(d, h, dh)),
                "b_Q": a(bq.reshape(h, dh)),
                "b_K": a(bk.reshape(h, dh)),
                "b_V": a(bv.reshape(h, dh)),
                "W_O": a(g(p + "attn.c_proj.weight").reshape(h, dh, d)),
                "b_O": a(g(p + "attn.c_proj.bias")),
                "ln2_w": a(g(p + "ln_2.weight")),
                "ln2_b": a(g(p + "ln_2.bias")),
                "W_in": a(g(p + "mlp.c_fc.weight")),
                "b_in": a(g(p + "mlp.c_fc.bias")),
                "W_out": a(g(p + "mlp.c_proj.weight")),
                "b_out": a(g(p + "mlp.c_proj.bias")),
            }
        )
    return {
        "embed": a(g("wte.weight")),
        "pos_embed": a(g("wpe.weight")),
        "layers": layers,
        "ln_final_w": a(g("ln_f.weight")),
        "ln_final_b": a(g("ln_f.bias")),
    }


def embed(
    params: dict, cfg: ModelConfig, tokens: jax.Array, positions: jax.Array, ctx: HookContext | None = None
) -> jax.Array:
    """Token plus learned position embeddings, hooked apart as TransformerLens does (hook_embed, hook_pos_embed)."""
    tok = hook(ctx, "hook_embed", params["embed"][tokens])  # (batch, seq, d_model)
    return tok + hook(ctx, "hook_pos_embed", params["pos_embed"][positions])


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
    h = layer_norm(x, p["ln1_w"], p["ln1_b"], cfg.norm_eps)
    attn_out = ctx(pre + "hook_attn_out", attention(p, cfg, layer, h, positions, pad_mask, ctx, pre))
    x = ctx(pre + "hook_resid_mid", x + attn_out)
    h = ctx(pre + "ln2.hook_normalized", layer_norm(x, p["ln2_w"], p["ln2_b"], cfg.norm_eps))  # MLP input
    mlp_out = ctx(pre + "hook_mlp_out", mlp(p, h, gelu_tanh, ctx, pre))
    return ctx(pre + "hook_resid_post", x + mlp_out)


def unembed(params: dict, cfg: ModelConfig, x: jax.Array, ctx: HookContext | None = None) -> jax.Array:
    x = hook(ctx, "ln_final.hook_normalized", layer_norm(x, params["ln_final_w"], params["ln_final_b"], cfg.norm_eps))
    if "W_U" in params:  # untied by TransformerLens-style processing (models/tl_processing.py)
        logits = jnp.einsum("bsm,mv->bsv", x, params["W_U"], preferred_element_type=jnp.float32)
        return logits + params["b_U"].astype(jnp.float32)
    return jnp.einsum("bsm,vm->bsv", x, params["embed"], preferred_element_type=jnp.float32)
