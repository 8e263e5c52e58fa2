"""The family-independent forward pass: embed, run blocks with hook points, unembed.

Each family module (llama, gemma2, gpt2, qwen, gemma3, gpt_neox) provides `embed`, `block` and `unembed`
(the blocks share `layers.attention`); this module runs them, threads the hook context through (embed and
unembed take it last, for the global hook_embed and ln_final.hook_normalized), and stops early when asked.
Layers run as an unrolled Python loop so that hooks attach to individual layers and `stop_at_layer` really
skips the work.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from saelab.models import gemma2, gemma3, gpt2, gpt_neox, llama, qwen
from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.kv_cache import KVCache, advanced, slot_positions

FAMILIES: dict[str, ModuleType] = {
    "llama": llama,
    "gemma2": gemma2,
    "gpt2": gpt2,
    "qwen": qwen,
    "gemma3": gemma3,
    "gpt_neox": gpt_neox,
}

Params = dict[str, Any]


class ForwardOutput(NamedTuple):
    logits: jax.Array | None  # (batch, seq, vocab) float32; None when stopped early
    cache: dict[str, jax.Array]  # hook name -> activation


def forward(
    params: Params,
    cfg: ModelConfig,
    tokens: jax.Array,
    pad_mask: jax.Array | None,
    ctx: HookContext,
    stop_at_layer: int | None = None,
) -> ForwardOutput:
    """Run the model on (batch, seq) token ids; `pad_mask` is 1 for real tokens (left or right padding)."""
    fam = FAMILIES[cfg.family]
    if pad_mask is None:
        pad_mask = jnp.ones(tokens.shape, jnp.int32)
    positions = jnp.maximum(jnp.cumsum(pad_mask, axis=1) - 1, 0)  # (batch, seq)
    ctx.positions = positions
    x = fam.embed(params, cfg, tokens, positions, ctx)  # (batch, seq, d_model)
    n = cfg.n_layers if stop_at_layer is None else stop_at_layer
    x = run_blocks(params, cfg, x, pad_mask, ctx, 0, n)
    if stop_at_layer is not None:
        return ForwardOutput(None, ctx.cache)
    return ForwardOutput(fam.unembed(params, cfg, x, ctx), ctx.cache)


def forward_cached(
    params: Params, cfg: ModelConfig, tokens: jax.Array, kv: KVCache, ctx: HookContext
) -> tuple[jax.Array, KVCache]:
    """Logits (batch, s, vocab) of `tokens` (batch, s) placed at slots kv.start.. of the cache, attending to
    every slot before them, and the cache with their keys written. Hooks in `ctx` apply as in `forward`
    (to this call's positions only)."""
    fam = FAMILIES[cfg.family]
    s = tokens.shape[1]
    positions = jax.lax.dynamic_slice_in_dim(slot_positions(kv.pad_mask), kv.start, s, axis=1)  # (batch, s)
    ctx.kv, ctx.kv_written, ctx.positions = kv, {}, positions
    x = fam.embed(params, cfg, tokens, positions, ctx)
    for layer in range(cfg.n_layers):
        x = fam.block(params["layers"][layer], cfg, layer, x, positions, kv.pad_mask, ctx)
    return fam.unembed(params, cfg, x, ctx), advanced(kv, ctx, s)


def run_blocks(
    params: Params, cfg: ModelConfig, x: jax.Array, pad_mask: jax.Array, ctx: HookContext, start: int, stop: int
) -> jax.Array:
    """The residual stream (batch, seq, d_model) after blocks start..stop-1, from the stream entering `start`.

    Lets a caller share the work below a layer between several continuations (the eval's splice variants).
    """
    fam = FAMILIES[cfg.family]
    positions = jnp.maximum(jnp.cumsum(pad_mask, axis=1) - 1, 0)  # (batch, seq)
    for layer in range(start, stop):
        x = fam.block(params["layers"][layer], cfg, layer, x, positions, pad_mask, ctx)
    return x


def unembed(params: Params, cfg: ModelConfig, x: jax.Array) -> jax.Array:
    """Logits (batch, seq, vocab) float32 from the last residual stream (final norm included)."""
    return FAMILIES[cfg.family].unembed(params, cfg, x)
