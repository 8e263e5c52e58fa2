"""Llama family (Llama 2/3, SmolLM2, Mistral): RMSNorm, RoPE, grouped-query attention, SwiGLU.

Block: x += o(attn(rope(q(n1(x))), rope(k(n1(x))), v(n1(x)))); x += down(silu(gate(n2(x))) * up(n2(x))).
The attention half is `layers.attention`, shared with every family; this file holds the weight names and
the norms' placement.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.layers import attention, hook, mlp, rms_norm

Getter = Callable[[str], np.ndarray]


def params_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> dict:
    """Hugging Face LlamaForCausalLM tensor names ([out, in] matrices) -> saelab params."""
    d, h, kv, dh = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head

    def a(x: np.ndarray) -> jax.Array:
        return jnp.asarray(x, dtype=dtype)

    layers = []
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        layer = {
            "ln1": a(get(p + "input_layernorm.weight")),
            "W_Q": a(get(p + "self_attn.q_proj.weight").T.reshape(d, h, dh)),
            "W_K": a(get(p + "self_attn.k_proj.weight").T.reshape(d, kv, dh)),
            "W_V": a(get(p + "self_attn.v_proj.weight").T.reshape(d, kv, dh)),
            "W_O": a(get(p + "self_attn.o_proj.weight").T.reshape(h, dh, d)),
            "ln2": a(get(p + "post_attention_layernorm.weight")),
            "W_gate": a(get(p + "mlp.gate_proj.weight").T),
            "W_up": a(get(p + "mlp.up_proj.weight").T),
            "W_down": a(get(p + "mlp.down_proj.weight").T),
        }
        if cfg.attention_bias:
            for n, hh in (("q", h), ("k", kv), ("v", kv)):
                layer[f"b_{n.upper()}"] = a(get(p + f"self_attn.{n}_proj.bias").reshape(hh, dh))
        if cfg.attn_out_bias:
            layer["b_O"] = a(get(p + "self_attn.o_proj.bias"))
        layers.append(layer)
    params = {"embed": a(get("model.embed_tokens.weight")), "layers": layers, "ln_final": a(get("model.norm.weight"))}
    if not cfg.tie_embeddings:
        params["unembed"] = a(get("lm_head.weight"))  # (vocab, d_model)
    return params


def embed(
    params: dict, cfg: ModelConfig, tokens: jax.Array, positions: jax.Array, ctx: HookContext | None = None
) -> jax.Array:
    return hook(ctx, "hook_embed", params["embed"][tokens])  # (batch, seq, d_model)


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
    attn_out = ctx(pre + "hook_attn_out", attention(p, cfg, layer, h, positions, pad_mask, ctx, pre))
    x = ctx(pre + "hook_resid_mid", x + attn_out)
    h = ctx(pre + "ln2.hook_normalized", rms_norm(x, p["ln2"], cfg.norm_eps))  # the MLP input
    mlp_out = ctx(pre + "hook_mlp_out", mlp(p, h, jax.nn.silu, ctx, pre))
    return ctx(pre + "hook_resid_post", x + mlp_out)


def unembed(params: dict, cfg: ModelConfig, x: jax.Array, ctx: HookContext | None = None) -> jax.Array:
    x = hook(ctx, "ln_final.hook_normalized", rms_norm(x, params["ln_final"], cfg.norm_eps))
    w = params.get("unembed", params["embed"])  # (vocab, d_model)
    return jnp.einsum("bsm,vm->bsv", x, w, preferred_element_type=jnp.float32)
