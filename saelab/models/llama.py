"""Llama family (Llama 2/3, SmolLM2, Mistral): RMSNorm, RoPE, grouped-query attention, SwiGLU.

Block: x += o(attn(rope(q(n1(x))), rope(k(n1(x))), v(n1(x)))); x += down(silu(gate(n2(x))) * up(n2(x))).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.kv_cache import keys_and_mask
from saelab.models.layers import apply_rope, attend, project_heads, rms_norm, rope_inv_freq

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


def embed(params: dict, cfg: ModelConfig, tokens: jax.Array, positions: jax.Array) -> jax.Array:
    return params["embed"][tokens]


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
    q = jnp.einsum("bsm,mhd->bshd", h, p["W_Q"])
    k = jnp.einsum("bsm,mhd->bshd", h, p["W_K"])
    v = jnp.einsum("bsm,mhd->bshd", h, p["W_V"])
    if cfg.attention_bias:
        q, k, v = q + p["b_Q"], k + p["b_K"], v + p["b_V"]
    inv_freq = rope_inv_freq(cfg)
    q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
    k, v, mask = keys_and_mask(ctx, layer, k, v, pad_mask, positions, cfg.sliding_window)
    z = ctx(pre + "attn.hook_z", attend(q, k, v, mask, cfg.d_head**-0.5))  # (batch, seq, heads, d_head)
    attn_out = ctx(pre + "hook_attn_out", project_heads(z, p["W_O"], p.get("b_O"), ctx, pre))
    x = ctx(pre + "hook_resid_mid", x + attn_out)
    h = ctx(pre + "ln2.hook_normalized", rms_norm(x, p["ln2"], cfg.norm_eps))  # the MLP input
    act = ctx(pre + "mlp.hook_post", jax.nn.silu(h @ p["W_gate"]) * (h @ p["W_up"]))  # (batch, seq, d_mlp)
    mlp_out = ctx(pre + "hook_mlp_out", act @ p["W_down"])
    return ctx(pre + "hook_resid_post", x + mlp_out)


def unembed(params: dict, cfg: ModelConfig, x: jax.Array) -> jax.Array:
    x = rms_norm(x, params["ln_final"], cfg.norm_eps)
    w = params.get("unembed", params["embed"])  # (vocab, d_model)
    return jnp.einsum("bsm,vm->bsv", x, w, preferred_element_type=jnp.float32)
