"""The pieces of the one transformer block: norms, rotary embeddings, masks, attention and the MLP.

Pure functions of arrays. Norm statistics and softmax run in float32 whatever the compute dtype, as the
reference implementations do, so bfloat16 runs stay close to float32 ones. `attention` is the one attention
half of every family's block, driven by the config (biases, q/k norm, rotary, sliding windows, soft-capping,
scale), so its TransformerLens hook points (hook_q .. hook_z, hook_result) live here and nowhere else.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.weights import AttentionWeights, MLPWeights, Norm

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": jax.nn.silu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
}


def rms_norm(x: jax.Array, w: jax.Array, eps: float, *, offset: float = 0.0) -> jax.Array:
    """RMSNorm; Gemma stores `w - 1` and passes offset=1."""
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
    if offset:
        return (xf * (offset + w.astype(jnp.float32))).astype(x.dtype)
    return w * xf.astype(x.dtype)


def layer_norm(x: jax.Array, w: jax.Array, b: jax.Array, eps: float) -> jax.Array:
    xf = x.astype(jnp.float32)
    mu = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xf - mu), axis=-1, keepdims=True)
    return ((xf - mu) * jax.lax.rsqrt(var + eps)).astype(x.dtype) * w + b


def norm(x: jax.Array, n: Norm, cfg: ModelConfig) -> jax.Array:
    """The config's norm (RMSNorm, with Gemma's 1 + w offset, or LayerNorm) of x over its last axis."""
    if cfg.norm == "layer":
        return layer_norm(x, n.w, n.b, cfg.norm_eps)
    return rms_norm(x, n.w, cfg.norm_eps, offset=cfg.norm_offset)


def rope_inv_freq(cfg: ModelConfig, local: bool = False) -> jax.Array:
    """Inverse frequencies, with Llama 3 ("llama3") or linear rope scaling when the config asks for it.

    Only the first `rotary_fraction` of d_head rotates (GPT-NeoX); `local` picks Gemma 3's sliding-layer base,
    which is never scaled."""
    d = int(cfg.d_head * cfg.rotary_fraction)
    theta, scaling = (cfg.rope_local_theta, None) if local else (cfg.rope_theta, cfg.rope_scaling)
    inv = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))  # (rotary_dim/2,)
    if scaling is None:
        return inv
    s = dict(scaling)
    kind = s.get("rope_type", s.get("type", "default"))
    if kind == "linear":
        return inv / s["factor"]
    if kind == "llama3":
        factor, lo, hi = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        old_ctx = s["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        smooth = (old_ctx / wavelen - lo) / (hi - lo)
        mid = (1 - smooth) * inv / factor + smooth * inv
        out = jnp.where(wavelen > old_ctx / lo, inv / factor, inv)
        is_mid = (wavelen >= old_ctx / hi) & (wavelen <= old_ctx / lo)
        return jnp.where(is_mid, mid, out)
    if kind == "default":
        return inv
    raise ValueError(f"unsupported rope scaling {kind!r}; supported: default, linear, llama3")


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: jax.Array) -> jax.Array:
    """Rotary embedding in the Hugging Face (rotate-half) layout. x: (batch, seq, heads, d_head); when
    `inv_freq` covers fewer than d_head dimensions, the first 2 * len(inv_freq) rotate and the rest pass."""
    rot = 2 * inv_freq.shape[-1]
    if rot < x.shape[-1]:
        return jnp.concatenate([apply_rope(x[..., :rot], positions, inv_freq), x[..., rot:]], axis=-1)
    ang = positions[:, :, None].astype(jnp.float32) * inv_freq  # (batch, seq, d_head/2)
    cos = jnp.concatenate([jnp.cos(ang)] * 2, -1)[:, :, None, :]
    sin = jnp.concatenate([jnp.sin(ang)] * 2, -1)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x.astype(jnp.float32) * cos + rotated * sin).astype(x.dtype)


BLOCKED_FROM = 512  # sequences at least this long attend in causal query blocks (`attend`)
QUERY_BLOCK = 128


def attention_mask(pad_mask: jax.Array, positions: jax.Array, window: int | None) -> jax.Array:
    """Boolean (batch, 1, q, k): causal, no padded keys, and keys within the sliding window if any."""
    q = positions[:, :, None]
    k = positions[:, None, :]
    ok = (k <= q) & pad_mask[:, None, :].astype(bool)
    idx = jnp.arange(pad_mask.shape[1])
    ok = ok & (idx[None, None, :] <= idx[None, :, None])  # causal in index order too (left padding)
    if window is not None:
        ok = ok & (q - k < window)
    return ok[:, None, :, :]


def attention(
    p: AttentionWeights,
    cfg: ModelConfig,
    layer: int,
    h: jax.Array,
    positions: jax.Array,
    pad_mask: jax.Array,
    ctx: HookContext,
    prefix: str,
) -> jax.Array:
    """A block's self-attention on its normalised input h (batch, seq, d_model) -> (batch, seq, d_model),
    output projection (and its bias) included, any post-attention norm not.

    As TransformerLens records them: hook_q/k/v are the projections with their biases, before q/k norm and
    rotary; hook_rot_q/k after rotary. Biases are used where the params have them (GPT-NeoX without
    `attention_bias` holds zeros; TransformerLens processing gives GPT-2 folded ones). With a KV cache
    (`ctx.kv`) the keys attended to are the cache's, hook_k/v this call's own."""
    from saelab.models.kv_cache import keys_and_mask  # kv_cache builds on attention_mask below

    a = prefix + "attn."
    q = ctx(a + "hook_q", _heads(h, p.W_Q, p.b_Q))  # (batch, seq, heads, d_head)
    k = ctx(a + "hook_k", _heads(h, p.W_K, p.b_K))  # (batch, seq, kv_heads, d_head)
    v = ctx(a + "hook_v", _heads(h, p.W_V, p.b_V))  # (batch, seq, kv_heads, d_head)
    if p.q_norm is not None:  # Qwen3, Gemma 3: RMSNorm over d_head on every query and key head, before rotary
        q, k = norm(q, Norm(p.q_norm), cfg), norm(k, Norm(p.k_norm), cfg)
    sliding = cfg.is_sliding(layer)
    if cfg.positions == "rope":
        # Gemma 3's sliding layers rotate with their own base; Gemma 2's and Qwen's share the global one.
        inv_freq = rope_inv_freq(cfg, local=sliding and cfg.rope_local_theta is not None)
        q = ctx(a + "hook_rot_q", apply_rope(q, positions, inv_freq))
        k = ctx(a + "hook_rot_k", apply_rope(k, positions, inv_freq))
    k, v, mask = keys_and_mask(ctx, layer, k, v, pad_mask, positions, cfg.sliding_window if sliding else None)
    scale = (cfg.query_pre_attn_scalar or cfg.d_head) ** -0.5  # Gemma's query_pre_attn_scalar, else d_head
    # Scores and pattern go through the context only when asked, leaving the plain path free to fuse.
    watched = ctx.active(a + "hook_attn_scores") or ctx.active(a + "hook_pattern")
    causal = ctx.kv is None  # no cache: key j is masked for every query i < j (index order)
    z = attend(q, k, v, mask, scale, cfg.attn_logit_softcap, ctx if watched else None, a, causal=causal)
    z = ctx(a + "hook_z", z)  # (batch, seq, heads, d_head)
    return project_heads(z, p.W_O, p.b_O, ctx, prefix)


def _heads(h: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    """(batch, seq, d_model) @ (d_model, heads, d_head) (+ (heads, d_head)) -> (batch, seq, heads, d_head)."""
    return _bias(jnp.einsum("bsm,mhd->bshd", h, w), b)


def attend(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array,
    scale: float,
    softcap: float | None = None,
    ctx: HookContext | None = None,
    prefix: str = "attn.",
    causal: bool = False,
) -> jax.Array:
    """Grouped-query attention. q: (b, s, H, d), k/v: (b, t, Hkv, d), mask (b, 1, s, t) -> z: (b, s, H, d).

    t = s for a full forward; with a KV cache t is the cache length. With `ctx`, the scores (b, H, s, t)
    (float32, scaled, soft-capped, masked: TransformerLens's hook_attn_scores) and the softmax pattern pass
    through `{prefix}hook_attn_scores` and `{prefix}hook_pattern`. `causal` says the mask hides every key
    after its query in index order (no cache): a long sequence then runs in query blocks of `QUERY_BLOCK`,
    each against the keys up to its end only, which skips the masked half of the scores (the keys left out
    carry exactly zero weight, so only the summation order changes)."""
    if causal and ctx is None and q.shape[1] == k.shape[1] >= BLOCKED_FROM:
        n, blk = q.shape[1], QUERY_BLOCK
        parts = [
            attend(
                q[:, i : i + blk], k[:, : i + blk], v[:, : i + blk], mask[:, :, i : i + blk, : i + blk], scale, softcap
            )
            for i in range(0, n, blk)
        ]
        return jnp.concatenate(parts, axis=1)
    b, s, h, d = q.shape
    t, kv = k.shape[1], k.shape[2]
    g = h // kv
    # Heads-major operands, so both products are plain batched GEMMs over (b, kv) whose outputs need no
    # transpose: query head i reads kv head i // g, and (kv, g) flattens to the head index.
    qh = q.reshape(b, s, kv, g, d).transpose(0, 2, 3, 1, 4)  # (b, kv, g, s, d)
    kh, vh = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # (b, kv, t, d)
    logits = jnp.einsum("bkgsd,bktd->bkgst", qh, kh, preferred_element_type=jnp.float32) * scale
    if softcap is not None:
        logits = jnp.tanh(logits / softcap) * softcap
    logits = logits.reshape(b, h, s, t)
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    if ctx is not None:
        logits = ctx(prefix + "hook_attn_scores", logits)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)  # (b, H, s, t)
    if ctx is not None:
        probs = ctx(prefix + "hook_pattern", probs)
    z = jnp.einsum("bkgst,bktd->bkgsd", probs.reshape(b, kv, g, s, t), vh)
    return z.transpose(0, 3, 1, 2, 4).reshape(b, s, h, d)


def mlp(p: MLPWeights, cfg: ModelConfig, h: jax.Array, ctx: HookContext, prefix: str) -> jax.Array:
    """The MLP on its input h (batch, seq, d_model) -> (batch, seq, d_model), any post-MLP norm not included.

    Gated where the weights have W_gate (Llama, Qwen, Gemma): act(h @ W_gate) * (h @ W_in), whose hook_pre is
    the gate and hook_pre_linear the up projection, as TransformerLens names them; else act(h @ W_in + b_in)."""
    m, act = prefix + "mlp.", ACTIVATIONS[cfg.activation]
    if p.W_gate is not None:
        gate = ctx(m + "hook_pre", h @ p.W_gate)  # (batch, seq, d_mlp)
        post = ctx(m + "hook_post", act(gate) * ctx(m + "hook_pre_linear", h @ p.W_in))
        return post @ p.W_out
    post = ctx(m + "hook_post", act(ctx(m + "hook_pre", _bias(h @ p.W_in, p.b_in))))  # (batch, seq, d_mlp)
    return _bias(post @ p.W_out, p.b_out)


def _bias(x: jax.Array, b: jax.Array | None) -> jax.Array:
    return x if b is None else x + b


def hook(ctx: HookContext | None, name: str, x: jax.Array) -> jax.Array:
    """`ctx(name, x)`, or x where there is no context (the families' embed and unembed called on their own)."""
    return x if ctx is None else ctx(name, x)


def project_heads(z: jax.Array, w_o: jax.Array, b_o: jax.Array | None, ctx: HookContext, prefix: str) -> jax.Array:
    """Output projection of z (batch, seq, heads, d_head) -> (batch, seq, d_model).

    The per-head results (hook_result, d_model wide per head) cost heads x more memory, so they are only
    materialised when something is attached to that hook point.
    """
    name = f"{prefix}attn.hook_result"
    if ctx.active(name):
        result = ctx(name, jnp.einsum("bshd,hdm->bshm", z, w_o))  # (batch, seq, heads, d_model)
        out = result.sum(axis=2)
    else:
        out = jnp.einsum("bshd,hdm->bsm", z, w_o)
    return _bias(out, b_o)
