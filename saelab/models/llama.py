"""Llama family (Llama 2/3, SmolLM2, Mistral): RMSNorm before attention and MLP, RoPE, grouped-query attention,
SwiGLU. Its Hugging Face names (`model.layers.{i}.self_attn.q_proj`, `mlp.gate_proj`, ...) and config keys are
shared by Qwen and Gemma, whose files reuse `llama_like_config` and `llama_like_weights`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from saelab.models.config import ModelConfig, rope_items
from saelab.models.weights import AttentionWeights, Family, Getter, LayerWeights, MLPWeights, ModelWeights, Reader

# LayerWeights norm field -> Hugging Face module name in a Llama-style block
LLAMA_NORMS = {"ln1": "input_layernorm", "ln2": "post_attention_layernorm"}


def config_from_hf(hf: dict[str, Any], name: str = "") -> ModelConfig:
    c = llama_like_config(hf, name, tie_default=False)
    if hf.get("use_sliding_window") is False:
        c["sliding_window"] = None
    return ModelConfig(family="llama", **c, attn_out_bias=c["attention_bias"])


def weights_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> ModelWeights:
    return llama_like_weights(Reader(get, dtype), cfg, LLAMA_NORMS)


def llama_like_config(hf: dict[str, Any], name: str, tie_default: bool) -> dict[str, Any]:
    """ModelConfig fields from the config keys Llama, Qwen and Gemma share. The rotary settings are
    `rope_theta` / `rope_scaling` in older configs, `rope_parameters` in those transformers >= 5 writes."""
    rope = hf.get("rope_parameters") or {}
    if not ("rope_type" in rope and "rope_theta" in rope):
        rope = {**(hf.get("rope_scaling") or {}), "rope_theta": hf.get("rope_theta", 10000.0)}
    d, h = hf["hidden_size"], hf["num_attention_heads"]
    return dict(
        n_layers=hf["num_hidden_layers"],
        d_model=d,
        n_heads=h,
        n_kv_heads=hf.get("num_key_value_heads") or h,
        d_head=hf.get("head_dim") or d // h,
        d_mlp=hf["intermediate_size"],
        vocab_size=hf["vocab_size"],
        max_positions=hf.get("max_position_embeddings", 8192),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        tie_embeddings=hf.get("tie_word_embeddings", tie_default),
        rope_theta=float(rope["rope_theta"]),
        rope_scaling=rope_items(rope),
        attention_bias=bool(hf.get("attention_bias", False)),
        sliding_window=hf.get("sliding_window"),
        name=name,
    )


def llama_like_weights(r: Reader, cfg: ModelConfig, norms: dict[str, str]) -> ModelWeights:
    """Weights of a checkpoint with Llama's tensor names ([out, in] matrices); `norms` names each block norm."""
    d, h, kv, dh = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head

    def attn(a: str) -> AttentionWeights:
        bias, qk = cfg.attention_bias, cfg.qk_norm
        return AttentionWeights(
            *(r.t(f"{a}{n}_proj.weight", d, heads, dh) for n, heads in (("q", h), ("k", kv), ("v", kv))),
            W_O=r.t(a + "o_proj.weight", h, dh, d),
            b_Q=r(a + "q_proj.bias", h, dh) if bias else None,
            b_K=r(a + "k_proj.bias", kv, dh) if bias else None,
            b_V=r(a + "v_proj.bias", kv, dh) if bias else None,
            b_O=r(a + "o_proj.bias") if cfg.attn_out_bias else None,
            q_norm=r(a + "q_norm.weight") if qk else None,  # (d_head,)
            k_norm=r(a + "k_norm.weight") if qk else None,
        )

    def layer(p: str) -> LayerWeights:
        m = p + "mlp."
        mlp = MLPWeights(
            W_in=r.t(m + "up_proj.weight"), W_out=r.t(m + "down_proj.weight"), W_gate=r.t(m + "gate_proj.weight")
        )
        return LayerWeights(attn(p + "self_attn."), mlp, **{k: r.norm(p + v) for k, v in norms.items()})

    layers = tuple(layer(f"model.layers.{i}.") for i in range(cfg.n_layers))
    unembed = None if cfg.tie_embeddings else r("lm_head.weight")  # (vocab, d_model)
    return ModelWeights(r("model.embed_tokens.weight"), layers, r.norm("model.norm"), unembed=unembed)


FAMILY = Family("llama", ("llama", "mistral", "smollm2"), config_from_hf, weights_from_hf)
