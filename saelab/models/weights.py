"""Typed weights of the one transformer block and the model around it (NamedTuples, so they are pytrees).

Matrices are stored the way the forward multiplies them, `(in, out)`, with heads split out of attention
matrices; names follow TransformerLens (W_Q, W_K, W_V, W_O, W_in, W_out, W_gate). A field is None where the
architecture has no such weight (no biases, no q/k norm, no post-norms), which is a static fact of the pytree
structure, so the block's `is None` checks cost nothing at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from saelab.models.config import ModelConfig

Getter = Callable[[str], np.ndarray]  # Hugging Face tensor name -> float32 array


class Norm(NamedTuple):
    """An RMSNorm (b None) or LayerNorm weight over the last axis."""

    w: jax.Array  # (d,)
    b: jax.Array | None = None  # (d,)


class AttentionWeights(NamedTuple):
    W_Q: jax.Array  # (d_model, n_heads, d_head)
    W_K: jax.Array  # (d_model, n_kv_heads, d_head)
    W_V: jax.Array  # (d_model, n_kv_heads, d_head)
    W_O: jax.Array  # (n_heads, d_head, d_model)
    b_Q: jax.Array | None = None  # (n_heads, d_head)
    b_K: jax.Array | None = None  # (n_kv_heads, d_head)
    b_V: jax.Array | None = None  # (n_kv_heads, d_head)
    b_O: jax.Array | None = None  # (d_model,)
    q_norm: jax.Array | None = None  # (d_head,) RMSNorm weight over each query head (Qwen3, Gemma 3)
    k_norm: jax.Array | None = None  # (d_head,)


class MLPWeights(NamedTuple):
    """Gated (W_gate set): act(h @ W_gate) * (h @ W_in) @ W_out. Plain: act(h @ W_in + b_in) @ W_out + b_out."""

    W_in: jax.Array  # (d_model, d_mlp): the up projection of a gated MLP
    W_out: jax.Array  # (d_mlp, d_model)
    W_gate: jax.Array | None = None  # (d_model, d_mlp)
    b_in: jax.Array | None = None  # (d_mlp,)
    b_out: jax.Array | None = None  # (d_model,)


class LayerWeights(NamedTuple):
    """One block. ln1/ln2 are the pre-norms (None with post-only placement), ln1_post/ln2_post the norms on
    what attention and MLP write to the stream (None with pre-only placement)."""

    attn: AttentionWeights
    mlp: MLPWeights
    ln1: Norm | None = None
    ln2: Norm | None = None
    ln1_post: Norm | None = None
    ln2_post: Norm | None = None


class ModelWeights(NamedTuple):
    embed: jax.Array  # (vocab, d_model)
    layers: tuple[LayerWeights, ...]
    ln_final: Norm
    unembed: jax.Array | None = None  # (vocab, d_model) when untied; None reads `embed`
    unembed_bias: jax.Array | None = None  # (vocab,): TransformerLens processing's b_U
    pos_embed: jax.Array | None = None  # (max_positions, d_model): learned positions (GPT-2)


class Reader(NamedTuple):
    """Reads Hugging Face tensors by name into the compute dtype: `read(name)`, transposed `read.t(name)`."""

    get: Getter
    dtype: jnp.dtype

    def __call__(self, name: str, *shape: int) -> jax.Array:
        return self.array(self.get(name), *shape)

    def t(self, name: str, *shape: int) -> jax.Array:
        """An [out, in] matrix (torch Linear) as (in, out), reshaped to `shape` if given."""
        return self.array(self.get(name).T, *shape)

    def array(self, x: np.ndarray, *shape: int) -> jax.Array:
        """x in the compute dtype, reshaped to `shape` if given."""
        return jnp.asarray(x.reshape(shape) if shape else x, dtype=self.dtype)

    def norm(self, prefix: str, bias: bool = False) -> Norm:
        """The norm at `{prefix}.weight` (and `{prefix}.bias`)."""
        return Norm(self(prefix + ".weight"), self(prefix + ".bias") if bias else None)


class Family(NamedTuple):
    """What a model family's file provides (`models.registry`): its names and the two mappings onto saelab's
    config and weights."""

    name: str  # `ModelConfig.family`
    model_types: tuple[str, ...]  # the Hugging Face `model_type` values it reads
    config_from_hf: Callable[[dict[str, Any], str], ModelConfig]  # (config.json dict, model name)
    weights_from_hf: Callable[[Getter, ModelConfig, jnp.dtype], ModelWeights]  # (tensor getter, config, dtype)
