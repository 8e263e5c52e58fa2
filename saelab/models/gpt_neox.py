"""GPT-NeoX / Pythia: LayerNorm with bias, fused QKV laid out per head, rotary on the first `rotary_pct` of
each head (the rest passes through), a GELU MLP with biases, an untied `embed_out`, and (Pythia's default)
the parallel residual: attention and MLP both read the block input.

Parallel:   x += dense(attn(qkv(ln1(x)))) + fc2(gelu(fc1(ln2(x)))).
Sequential: x += dense(attn(qkv(ln1(x)))); x += fc2(gelu(fc1(ln2(x)))).
In the parallel block hook_resid_mid is still resid_pre + attn_out (so resid_post = resid_mid + mlp_out),
but the MLP reads resid_pre, as the model does: an edit at resid_mid reaches resid_post, not the MLP.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.kv_cache import keys_and_mask
from saelab.models.layers import apply_rope, attend, layer_norm, project_heads, rope_inv_freq

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
    h = layer_norm(x, p["ln1_w"], p["ln1_b"], cfg.norm_eps)
    q = jnp.einsum("bsm,mhd->bshd", h, p["W_Q"]) + p["b_Q"]  # (batch, seq, heads, d_head)
    k = jnp.einsum("bsm,mhd->bshd", h, p["W_K"]) + p["b_K"]
    v = jnp.einsum("bsm,mhd->bshd", h, p["W_V"]) + p["b_V"]
    inv_freq = rope_inv_freq(cfg)  # (rotary_dim/2,): only the first rotary_pct of d_head rotates
    q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
    k, v, mask = keys_and_mask(ctx, layer, k, v, pad_mask, positions, None)
    z = ctx(pre + "attn.hook_z", attend(q, k, v, mask, cfg.d_head**-0.5))  # (batch, seq, heads, d_head)
    attn_out = ctx(pre + "hook_attn_out", project_heads(z, p["W_O"], p["b_O"], ctx, pre))
    mid = ctx(pre + "hook_resid_mid", x + attn_out)
    h = layer_norm(x if cfg.parallel_residual else mid, p["ln2_w"], p["ln2_b"], cfg.norm_eps)
    h = ctx(pre + "ln2.hook_normalized", h)  # the MLP input (from resid_pre in parallel blocks)
    act = ctx(pre + "mlp.hook_post", jax.nn.gelu(h @ p["W_in"] + p["b_in"], approximate=cfg.gelu_tanh))
    mlp_out = ctx(pre + "hook_mlp_out", act @ p["W_out"] + p["b_out"])  # (batch, seq, d_model)
    return ctx(pre + "hook_resid_post", mid + mlp_out)


def unembed(params: dict, cfg: ModelConfig, x: jax.Array) -> jax.Array:
    x = layer_norm(x, params["ln_final_w"], params["ln_final_b"], cfg.norm_eps)
    w = params.get("unembed", params["embed"])  # (vocab, d_model)
    return jnp.einsum("bsm,vm->bsv", x, w, preferred_element_type=jnp.float32)
