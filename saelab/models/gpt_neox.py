"""GPT-NeoX / Pythia: LayerNorm with bias, fused QKV laid out per head, rotary on the first `rotary_pct` of
each head (the rest passes through), a GELU MLP with biases, an untied `embed_out`, and (Pythia's default)
the parallel residual: attention and MLP both read the block input.

Parallel:   x += dense(attn(qkv(ln1(x)))) + fc2(gelu(fc1(ln2(x)))).
Sequential: x += dense(attn(qkv(ln1(x)))); x += fc2(gelu(fc1(ln2(x)))).
In the parallel block hook_resid_mid is still resid_pre + attn_out (so resid_post = resid_mid + mlp_out),
but the MLP reads resid_pre, as the model does: an edit at resid_mid reaches resid_post, not the MLP.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.layers import attention, hook, layer_norm, mlp

Getter = Callable[[str], np.ndarray]


def params_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> dict:
    """Hugging Face GPTNeoXForCausalLM tensor names ([out, in] matrices) -> saelab params. The fused
    query_key_value rows are (heads, [q, k, v], d_head); the unembedding is `embed_out` in checkpoint files
    (Pythia's and transformers' own), `lm_head` when converted from the module's state dict."""
    d, h, dh = cfg.d_model, cfg.n_heads, cfg.d_head

    def a(x: np.ndarray) -> jax.Array:
        return jnp.asarray(x, dtype=dtype)

    def opt(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return get(name) if cfg.attention_bias else np.zeros(shape, np.float32)

    layers = []
    for i in range(cfg.n_layers):
        p = f"gpt_neox.layers.{i}."
        w_qkv = get(p + "attention.query_key_value.weight").reshape(h, 3, dh, d)
        b_qkv = opt(p + "attention.query_key_value.bias", (3 * d,)).reshape(h, 3, dh)
        layer = {
            "ln1_w": a(get(p + "input_layernorm.weight")),
            "ln1_b": a(get(p + "input_layernorm.bias")),
            "W_O": a(get(p + "attention.dense.weight").T.reshape(h, dh, d)),
            "b_O": a(opt(p + "attention.dense.bias", (d,))),
            "ln2_w": a(get(p + "post_attention_layernorm.weight")),
            "ln2_b": a(get(p + "post_attention_layernorm.bias")),
            "W_in": a(get(p + "mlp.dense_h_to_4h.weight").T),
            "b_in": a(get(p + "mlp.dense_h_to_4h.bias")),
            "W_out": a(get(p + "mlp.dense_4h_to_h.weight").T),
            "b_out": a(get(p + "mlp.dense_4h_to_h.bias")),
        }
        for j, n in enumerate("QKV"):
            layer[f"W_{n}"] = a(w_qkv[:, j].transpose(2, 0, 1))  # (d_model, heads, d_head)
            layer[f"b_{n}"] = a(b_qkv[:, j])  # (heads, d_head)
        layers.append(layer)
    params = {
        "embed": a(get("gpt_neox.embed_in.weight")),
        "layers": layers,
        "ln_final_w": a(get("gpt_neox.final_layer_norm.weight")),
        "ln_final_b": a(get("gpt_neox.final_layer_norm.bias")),
    }
    if not cfg.tie_embeddings:
        try:
            params["unembed"] = a(get("embed_out.weight"))  # (vocab, d_model)
        except KeyError:
            params["unembed"] = a(get("lm_head.weight"))
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
    h = layer_norm(x, p["ln1_w"], p["ln1_b"], cfg.norm_eps)
    attn_out = ctx(pre + "hook_attn_out", attention(p, cfg, layer, h, positions, pad_mask, ctx, pre))
    mid = ctx(pre + "hook_resid_mid", x + attn_out)
    h = layer_norm(x if cfg.parallel_residual else mid, p["ln2_w"], p["ln2_b"], cfg.norm_eps)
    h = ctx(pre + "ln2.hook_normalized", h)  # the MLP input (from resid_pre in parallel blocks)
    act = functools.partial(jax.nn.gelu, approximate=cfg.gelu_tanh)
    mlp_out = ctx(pre + "hook_mlp_out", mlp(p, h, act, ctx, pre))  # (batch, seq, d_model)
    return ctx(pre + "hook_resid_post", mid + mlp_out)


def unembed(params: dict, cfg: ModelConfig, x: jax.Array, ctx: HookContext | None = None) -> jax.Array:
    x = hook(ctx, "ln_final.hook_normalized", layer_norm(x, params["ln_final_w"], params["ln_final_b"], cfg.norm_eps))
    w = params.get("unembed", params["embed"])  # (vocab, d_model)
    return jnp.einsum("bsm,vm->bsv", x, w, preferred_element_type=jnp.float32)
