"""Sparse codes as (values, indices) pairs, and the conversions every TopK-style architecture shares."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class TopK(NamedTuple):
    """k live latents per token."""

    vals: jax.Array  # (batch, k) float32, ReLU applied (a kept pre-activation <= 0 gives 0)
    idx: jax.Array  # (batch, k) int32 latent indices


def top_k(a: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """`jax.lax.top_k` over the last axis behind an optimisation barrier.

    Without it XLA CPU fuses the top-k's slice into consumers that gather with its indices and falls back to
    a full sort of every row, far slower than the top-k at training sizes.
    """
    return jax.lax.optimization_barrier(jax.lax.top_k(a, k))


def densify(vals: jax.Array, idx: jax.Array, width: int) -> jax.Array:
    """(batch, k) values at (batch, k) indices -> (batch, width) codes; repeated indices add up (AuxK
    pads its unused slots with value 0 at an index that may be in use)."""
    rows = jnp.arange(vals.shape[0])[:, None]  # (batch, 1)
    return jnp.zeros((vals.shape[0], width), vals.dtype).at[rows, idx].add(vals)


def latent_counts(codes: TopK, d_sae: int) -> jax.Array:
    """(d_sae,) number of tokens on which each latent is non-zero."""
    fired = (codes.vals > 0).astype(jnp.float32).ravel()
    return jax.ops.segment_sum(fired, codes.idx.ravel(), d_sae)
