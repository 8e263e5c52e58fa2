"""A toy model family for tests: the Llama block with OLMo 2's norm placement, norms only on what attention and
the MLP write to the residual stream (x += norm(attn(x)); x += norm(mlp(x))), which no shipped family uses.

All a family needs is this file (its config and tensor-name mappings) and one `registry.register` line.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from saelab.models import llama
from saelab.models.config import ModelConfig
from saelab.models.weights import Family, Getter, ModelWeights, Reader

NORMS = {"ln1_post": "post_attention_layernorm", "ln2_post": "post_feedforward_layernorm"}


def config_from_hf(hf: dict[str, Any], name: str = "") -> ModelConfig:
    c = llama.llama_like_config(hf, name, tie_default=True)
    return ModelConfig(family="toy_post", **c, norm_placement="post")


def weights_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> ModelWeights:
    return llama.llama_like_weights(Reader(get, dtype), cfg, NORMS)


FAMILY = Family("toy_post", ("toy_post",), config_from_hf, weights_from_hf)
