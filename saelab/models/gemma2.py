"""Gemma 2 (the atoms paper's model): the Llama-like block with norms before and after attention and MLP
("sandwich"), (1 + w) RMSNorm weights, attention and final-logit soft-capping, alternating sliding-window /
global attention, embeddings scaled by sqrt(d_model), a query pre-attention scalar and a GeGLU MLP.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from saelab.models import llama
from saelab.models.config import ModelConfig
from saelab.models.weights import Family, Getter, ModelWeights, Reader

GEMMA_NORMS = {
    "ln1": "input_layernorm",
    "ln1_post": "post_attention_layernorm",
    "ln2": "pre_feedforward_layernorm",
    "ln2_post": "post_feedforward_layernorm",
}


def config_from_hf(hf: dict[str, Any], name: str = "") -> ModelConfig:
    return gemma_config(hf, name, "gemma2", pattern=2)


def weights_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> ModelWeights:
    return llama.llama_like_weights(Reader(get, dtype), cfg, GEMMA_NORMS)


def gemma_config(hf: dict[str, Any], name: str, family: str, pattern: int, **fields: Any) -> ModelConfig:
    """The config of Gemma 2 and 3: one global layer every `sliding_window_pattern` (default `pattern`) unless
    `layer_types` lists them; `fields` overrides the shared Llama-like ones."""
    c = llama.llama_like_config(hf, name, tie_default=True) | fields
    if c["attention_bias"]:
        raise ValueError(
            f"{name or 'config'}: {hf['model_type']} with attention_bias is not supported (no such release)"
        )
    every = hf.get("sliding_window_pattern", pattern)
    types = hf.get("layer_types") or [
        "sliding_attention" if (i + 1) % every else "full_attention" for i in range(c["n_layers"])
    ]
    return ModelConfig(
        family=family,
        **c,
        norm_offset=1.0,
        norm_placement="sandwich",
        embed_scale=True,
        activation="gelu_tanh",
        layer_types=tuple(types),
        attn_logit_softcap=hf.get("attn_logit_softcapping"),
        final_logit_softcap=hf.get("final_logit_softcapping"),
        query_pre_attn_scalar=hf.get("query_pre_attn_scalar", c["d_head"]),
    )


FAMILY = Family("gemma2", ("gemma2",), config_from_hf, weights_from_hf)
