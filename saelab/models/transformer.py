"""The forward pass: embed, the one transformer block (run per layer, with hook points), unembed.

Every family runs this same block; the config says where its norms sit (pre, sandwich or post), whether the
residual is parallel, and the attention and MLP details (`layers.attention`, `layers.mlp`). A family's own file
only maps its checkpoint's names and config onto `ModelWeights` and `ModelConfig` (`models.registry`), as
penzai's `llamalike_common` builds Llama, Mistral and Gemma from one block. Layers run as an unrolled Python
loop so that hooks attach to individual layers and `stop_at_layer` really skips the work.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.kv_cache import KVCache, advanced, slot_positions
from saelab.models.layers import attention, hook, mlp, norm
from saelab.models.weights import LayerWeights, ModelWeights, Norm


class ForwardOutput(NamedTuple):
    logits: jax.Array | None  # (batch, seq, vocab) float32; None when stopped early
    cache: dict[str, jax.Array]  # hook name -> activation


def forward(
    params: ModelWeights,
    cfg: ModelConfig,
    tokens: jax.Array,
    pad_mask: jax.Array | None,
    ctx: HookContext,
    stop_at_layer: int | None = None,
) -> ForwardOutput:
    """Run the model on (batch, seq) token ids; `pad_mask` is 1 for real tokens (left or right padding)."""
    if pad_mask is None:
        pad_mask = jnp.ones(tokens.shape, jnp.int32)
    positions = jnp.maximum(jnp.cumsum(pad_mask, axis=1) - 1, 0)  # (batch, seq)
    ctx.positions = positions
    x = embed(params, cfg, tokens, positions, ctx)  # (batch, seq, d_model)
    n = cfg.n_layers if stop_at_layer is None else stop_at_layer
    x = run_blocks(params, cfg, x, pad_mask, ctx, 0, n)
    if stop_at_layer is not None:
        return ForwardOutput(None, ctx.cache)
    return ForwardOutput(unembed(params, cfg, x, ctx), ctx.cache)


def forward_cached(
    params: ModelWeights, cfg: ModelConfig, tokens: jax.Array, kv: KVCache, ctx: HookContext
) -> tuple[jax.Array, KVCache]:
    """Logits (batch, s, vocab) of `tokens` (batch, s) placed at slots kv.start.. of the cache, attending to
    every slot before them, and the cache with their keys written. Hooks in `ctx` apply as in `forward`
    (to this call's positions only)."""
    s = tokens.shape[1]
    positions = jax.lax.dynamic_slice_in_dim(slot_positions(kv.pad_mask), kv.start, s, axis=1)  # (batch, s)
    ctx.kv, ctx.kv_written, ctx.positions = kv, {}, positions
    x = embed(params, cfg, tokens, positions, ctx)
    for layer in range(cfg.n_layers):
        x = block(params.layers[layer], cfg, layer, x, positions, kv.pad_mask, ctx)
    return unembed(params, cfg, x, ctx), advanced(kv, ctx, s)


def run_blocks(
    params: ModelWeights,
    cfg: ModelConfig,
    x: jax.Array,
    pad_mask: jax.Array,
    ctx: HookContext,
    start: int,
    stop: int,
) -> jax.Array:
    """The residual stream (batch, seq, d_model) after blocks start..stop-1, from the stream entering `start`.

    Lets a caller share the work below a layer between several continuations (the eval's splice variants).
    """
    positions = jnp.maximum(jnp.cumsum(pad_mask, axis=1) - 1, 0)  # (batch, seq)
    for layer in range(start, stop):
        x = block(params.layers[layer], cfg, layer, x, positions, pad_mask, ctx)
    return x


def embed(
    params: ModelWeights, cfg: ModelConfig, tokens: jax.Array, positions: jax.Array, ctx: HookContext | None = None
) -> jax.Array:
    """The residual stream entering block 0 (batch, seq, d_model): token embedding (Gemma: times sqrt(d_model)),
    plus learned positions where the model has them, hooked apart as TransformerLens does."""
    x = params.embed[tokens]  # (batch, seq, d_model)
    if cfg.embed_scale:
        x = x * jnp.asarray(cfg.d_model**0.5, dtype=x.dtype)
    x = hook(ctx, "hook_embed", x)
    if params.pos_embed is not None:
        x = x + hook(ctx, "hook_pos_embed", params.pos_embed[positions])
    return x


def block(
    p: LayerWeights,
    cfg: ModelConfig,
    layer: int,
    x: jax.Array,
    positions: jax.Array,
    pad_mask: jax.Array,
    ctx: HookContext,
) -> jax.Array:
    """One transformer block on the residual stream x (batch, seq, d_model).

    hook_attn_out and hook_mlp_out are what enters the stream (after any post-norm). hook_resid_mid is always
    resid_pre + attn_out; in a parallel block the MLP still reads resid_pre, as the model does, so an edit at
    resid_mid reaches resid_post but not the MLP. ln2.hook_normalized is the MLP's normalised input."""
    pre = f"blocks.{layer}."
    pre_norm, post_norm = cfg.norm_placement != "post", cfg.norm_placement != "pre"
    x = ctx(pre + "hook_resid_pre", x)  # (batch, seq, d_model)
    attn = attention(p.attn, cfg, layer, _norm_if(pre_norm, x, p.ln1, cfg), positions, pad_mask, ctx, pre)
    attn_out = ctx(pre + "hook_attn_out", _norm_if(post_norm, attn, p.ln1_post, cfg))
    mid = ctx(pre + "hook_resid_mid", x + attn_out)
    h = x if cfg.parallel_residual else mid
    if pre_norm:
        h = ctx(pre + "ln2.hook_normalized", norm(h, p.ln2, cfg))  # the MLP input
    mlp_out = ctx(pre + "hook_mlp_out", _norm_if(post_norm, mlp(p.mlp, cfg, h, ctx, pre), p.ln2_post, cfg))
    return ctx(pre + "hook_resid_post", mid + mlp_out)


def _norm_if(on: bool, x: jax.Array, n: Norm | None, cfg: ModelConfig) -> jax.Array:
    """norm(x) where the config's placement puts a norm here, else x."""
    return norm(x, n, cfg) if on else x


def unembed(params: ModelWeights, cfg: ModelConfig, x: jax.Array, ctx: HookContext | None = None) -> jax.Array:
    """Logits (batch, seq, vocab) float32 from the last residual stream: final norm, unembedding (tied to the
    embedding unless the model has its own), TransformerLens's b_U if processed, final soft-capping (Gemma)."""
    x = hook(ctx, "ln_final.hook_normalized", norm(x, params.ln_final, cfg))
    w = params.embed if params.unembed is None else params.unembed  # (vocab, d_model)
    logits = jnp.einsum("bsm,vm->bsv", x, w, preferred_element_type=jnp.float32)
    if params.unembed_bias is not None:
        logits = logits + params.unembed_bias.astype(jnp.float32)
    if cfg.final_logit_softcap is not None:
        logits = jnp.tanh(logits / cfg.final_logit_softcap) * cfg.final_logit_softcap
    return logits
