"""A key/value cache for incremental decoding: each call writes its tokens' keys and values at their slots
and attends over every slot filled so far.

The cache rides on the `HookContext` of a forward pass (`ctx.kv`), so the transformer block stays one function:
its attention asks `keys_and_mask` for the keys, values and mask to attend with, which is the plain causal
mask without a cache. Slots are absolute columns of one (batch, max_len) buffer; a row's prompt is left-padded,
so its positions (what rotary and learned position embeddings see) come from the cumulative pad mask.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.layers import attention_mask


class KVCache(NamedTuple):
    """Keys and values of every layer at every slot, and which slots hold real tokens."""

    k: jax.Array  # (n_layers, batch, max_len, n_kv_heads, d_head)
    v: jax.Array  # (n_layers, batch, max_len, n_kv_heads, d_head)
    pad_mask: jax.Array  # (batch, max_len) int32: 0 for left padding, 1 for prompt and generated slots
    start: jax.Array  # () int32: slot of the first token of the next call


def empty_cache(cfg: ModelConfig, pad_mask: jax.Array, dtype: jnp.dtype = jnp.float32) -> KVCache:
    """A cache for rows whose slots are described by `pad_mask` (batch, max_len), nothing written yet."""
    b, n = pad_mask.shape
    shape = (cfg.n_layers, b, n, cfg.n_kv_heads, cfg.d_head)
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), pad_mask.astype(jnp.int32), jnp.int32(0))


def slot_positions(pad_mask: jax.Array) -> jax.Array:
    """Token positions (batch, max_len) of every slot: the count of real tokens before it."""
    return jnp.maximum(jnp.cumsum(pad_mask, axis=1) - 1, 0)


def keys_and_mask(
    ctx: HookContext,
    layer: int,
    k: jax.Array,
    v: jax.Array,
    pad_mask: jax.Array,
    positions: jax.Array,
    window: int | None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(keys, values, mask (batch, 1, q, keys)) for a block's attention. Without a cache: this call's own
    keys under the causal mask. With one: this call's keys written at slots start.. and all slots returned."""
    cache: KVCache | None = ctx.kv
    if cache is None:
        return k, v, attention_mask(pad_mask, positions, window)
    s = k.shape[1]
    layer_k = jax.lax.dynamic_update_slice_in_dim(cache.k[layer], k.astype(cache.k.dtype), cache.start, axis=1)
    layer_v = jax.lax.dynamic_update_slice_in_dim(cache.v[layer], v.astype(cache.v.dtype), cache.start, axis=1)
    ctx.kv_written[layer] = (layer_k, layer_v)
    q_slot = cache.start + jnp.arange(s)  # (q,)
    k_slot = jnp.arange(cache.pad_mask.shape[1])  # (keys,)
    ok = (k_slot[None, None, :] <= q_slot[None, :, None]) & cache.pad_mask[:, None, :].astype(bool)
    if window is not None:
        ok = ok & (positions[:, :, None] - slot_positions(cache.pad_mask)[:, None, :] < window)
    return layer_k.astype(k.dtype), layer_v.astype(v.dtype), ok[:, None, :, :]


def advanced(cache: KVCache, ctx: HookContext, n_tokens: int) -> KVCache:
    """The cache after a call over `n_tokens` slots: every layer's written keys, `start` moved past them."""
    if len(ctx.kv_written) != cache.k.shape[0]:
        raise ValueError(f"a cached forward wrote {len(ctx.kv_written)} of {cache.k.shape[0]} layers' keys")
    ks = jnp.stack([ctx.kv_written[i][0] for i in range(cache.k.shape[0])])
    vs = jnp.stack([ctx.kv_written[i][1] for i in range(cache.k.shape[0])])
    return KVCache(ks, vs, cache.pad_mask, cache.start + n_tokens)
