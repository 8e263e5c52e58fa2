"""Building blocks shared by the model families: norms, rotary embeddings, masks and attention.

Pure functions of arrays. Norm statistics and softmax run in float32 whatever the compute dtype, as the
reference implementations do, so bfloat16 runs stay close to float32 ones.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext


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


def gelu_tanh(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=True)


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


def attend(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, scale: float, softcap: float | None = None
) -> jax.Array:
    """Grouped-query attention. q: (b, s, H, d), k/v: (b, t, Hkv, d), mask (b, 1, s, t) -> z: (b, s, H, d).

    t = s for a full forward; with a KV cache t is the cache length."""
    b, s, h, d = q.shape
    t = k.shape[1]
    g = h // k.shape[2]
    qg = q.reshape(b, s, k.shape[2], g, d)
    logits = jnp.einsum("bqkgd,btkd->bkgqt", qg, k, preferred_element_type=jnp.float32) * scale
    if softcap is not None:
        logits = jnp.tanh(logits / softcap) * softcap
    logits = logits.reshape(b, h, s, t)
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype).reshape(b, k.shape[2], g, s, t)
    z = jnp.einsum("bkgqt,btkd->bqkgd", probs, v)
    return z.reshape(b, s, h, d)


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
    return out if b_o is None else out + b_o
