"""GPT-NeoX / Pythia: LayerNorm with bias, fused QKV laid out per head, rotary on the first `rotary_pct` of
each head (the rest passes through), a GELU MLP with biases, an untied `embed_out`, and (Pythia's default)
the parallel residual: attention and MLP both read the block input.

Parallel:   x += dense(attn(qkv(ln1(x)))) + fc2(gelu(fc1(ln2(x)))).
Sequential: x += dense(attn(qkv(ln1(x)))); x += fc2(gelu(fc1(ln2(x)))).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from saelab.models.config import ModelConfig, mha_shape, rope_items
from saelab.models.weights import AttentionWeights, Family, Getter, LayerWeights, MLPWeights, ModelWeights, Reader

_GELU = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


def config_from_hf(hf: dict[str, Any], name: str = "") -> ModelConfig:
    """The rotary settings are `rotary_pct` / `rotary_emb_base` in older configs and `rope_parameters`
    (`partial_rotary_factor`, `rope_theta`) in those transformers >= 5 writes."""
    act = hf.get("hidden_act", "gelu")
    if act not in _GELU:
        raise ValueError(
            f"{name or 'config'}: GPT-NeoX hidden_act {act!r} is not supported; supported: {sorted(_GELU)}"
        )
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = rope.pop("rope_theta", hf.get("rotary_emb_base", 10000.0))
    fraction = rope.pop("partial_rotary_factor", hf.get("rotary_pct", 0.25))
    bias = bool(hf.get("attention_bias", True))
    shape = mha_shape(
        hf["num_hidden_layers"], hf["hidden_size"], hf["num_attention_heads"], hf["intermediate_size"], hf["vocab_size"]
    )
    return ModelConfig(
        family="gpt_neox",
        **shape,
        max_positions=hf.get("max_position_embeddings", 2048),
        norm_eps=hf.get("layer_norm_eps", 1e-5),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        norm="layer",
        rope_theta=float(theta),
        rope_scaling=rope_items(rope),
        rotary_fraction=float(fraction),
        parallel_residual=bool(hf.get("use_parallel_residual", True)),
        attention_bias=bias,
        attn_out_bias=bias,
        mlp_gated=False,
        activation=_GELU[act],
        name=name,
    )


def weights_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> ModelWeights:
    """GPTNeoXForCausalLM tensor names ([out, in] matrices). The fused query_key_value rows are (heads, [q, k, v],
    d_head); the unembedding is `embed_out` in checkpoint files, `lm_head` when converted from a state dict."""
    d, h, dh, r = cfg.d_model, cfg.n_heads, cfg.d_head, Reader(get, dtype)

    def layer(p: str) -> LayerWeights:
        a, m = p + "attention.", p + "mlp."
        w_qkv = get(a + "query_key_value.weight").reshape(h, 3, dh, d)
        b_qkv = get(a + "query_key_value.bias").reshape(h, 3, dh) if cfg.attention_bias else None
        w = [r.array(w_qkv[:, j].transpose(2, 0, 1)) for j in range(3)]  # (d_model, heads, d_head)
        b = [None if b_qkv is None else r.array(b_qkv[:, j]) for j in range(3)]  # (heads, d_head)
        b_o = r(a + "dense.bias") if cfg.attention_bias else None
        attn = AttentionWeights(*w, r.t(a + "dense.weight", h, dh, d), *b, b_O=b_o)
        mlp = MLPWeights(
            r.t(m + "dense_h_to_4h.weight"),
            r.t(m + "dense_4h_to_h.weight"),
            None,
            r(m + "dense_h_to_4h.bias"),
            r(m + "dense_4h_to_h.bias"),
        )
        return LayerWeights(
            attn, mlp, ln1=r.norm(p + "input_layernorm", True), ln2=r.norm(p + "post_attention_layernorm", True)
        )

    layers = tuple(layer(f"gpt_neox.layers.{i}.") for i in range(cfg.n_layers))
    unembed = None
    if not cfg.tie_embeddings:
        try:
            unembed = r("embed_out.weight")  # (vocab, d_model)
        except KeyError:
            unembed = r("lm_head.weight")
    return ModelWeights(r("gpt_neox.embed_in.weight"), layers, r.norm("gpt_neox.final_layer_norm", True), unembed)


FAMILY = Family("gpt_neox", ("gpt_neox",), config_from_hf, weights_from_hf)
