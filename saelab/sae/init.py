"""Parameter initialisation: tied init with short random decoder rows, and the geometric-median b_dec.

Init follows SAELens and OpenAI (Gao et al. 2024, sec. 2.3 / A.1): decoder rows are random directions of
norm `dec_init_norm`, `W_enc = W_dec.T` (tied init, which cuts dead latents at the start), `b_enc = 0`;
`b_dec` is 0 or given, typically the geometric median of a sample of activations (OpenAI's b_pre).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from saelab.sae.config import SAEConfig
from saelab.sae.params import SAEParams
from saelab.sae.transcoder import init_skip


def init_params(key: jax.Array, cfg: SAEConfig, b_dec: jax.Array | None = None) -> SAEParams:
    """Fresh float32 parameters for `cfg`; `threshold` is its config's initial threshold
    (jumprelu_init_threshold for jumprelu, 0 for the BatchTopK-based EMA, as in SAELens), None without one;
    a transcoder's b_dec is (d_out,) and a skip-transcoder's W_skip starts at 0."""

    d_out = cfg.resolved_d_out
    dec_key, enc_key = jax.random.split(key) if cfg.is_transcoder else (key, None)
    W_dec = _rows(dec_key, cfg.d_sae, d_out, cfg.dec_init_norm)  # (d_sae, d_out)
    # A transcoder's input and output are different spaces, so the tied init has nothing to tie: the encoder
    # gets its own random directions of the same norm (SAELens draws both at random too).
    W_enc = W_dec.T if enc_key is None else _rows(enc_key, cfg.d_sae, cfg.d_in, cfg.dec_init_norm).T
    if b_dec is None:
        b_dec = jnp.zeros((d_out,), jnp.float32)
    elif b_dec.shape != (d_out,):
        raise ValueError(f"b_dec must have shape ({d_out},), got {b_dec.shape}")
    theta = cfg.initial_threshold()
    threshold = None if theta is None else jnp.full((cfg.d_sae,), theta, jnp.float32)
    return SAEParams(
        W_enc=W_enc,
        b_enc=jnp.zeros((cfg.d_sae,), jnp.float32),
        W_dec=W_dec,
        b_dec=jnp.asarray(b_dec, jnp.float32),
        threshold=threshold,
        W_skip=init_skip(cfg),
    )


def _rows(key: jax.Array, n: int, d: int, norm: float) -> jax.Array:
    """(n, d) random directions of length `norm`."""
    w = jax.random.normal(key, (n, d), jnp.float32)
    return w * (norm / jnp.linalg.norm(w, axis=1, keepdims=True))


@partial(jax.jit, static_argnames=("max_iter",))
def geometric_median(points: jax.Array, max_iter: int = 200, tol: float = 1e-6) -> jax.Array:
    """argmin_y sum_i ||points_i - y|| by Weiszfeld iterations from the mean, (d,).

    points: (n, d). Stops when a step moves y by less than tol * (mean distance to y); distances are
    floored at 1e-12 times that scale so an iterate landing on a data point stays finite.
    """
    points = points.astype(jnp.float32)

    def step(y: jax.Array) -> jax.Array:
        dist = jnp.linalg.norm(points - y, axis=1)  # (n,)
        w = 1.0 / jnp.maximum(dist, 1e-12 * jnp.maximum(dist.mean(), 1e-30))
        return (w[:, None] * points).sum(0) / w.sum()

    def cond(state):
        i, y, shift = state
        scale = jnp.linalg.norm(points - y, axis=1).mean()
        return (i < max_iter) & (shift > tol * scale)

    def body(state):
        i, y, _ = state
        y_new = step(y)
        return i + 1, y_new, jnp.linalg.norm(y_new - y)

    y0 = points.mean(0)
    _, y, _ = jax.lax.while_loop(cond, body, (0, y0, jnp.asarray(jnp.inf, jnp.float32)))
    return y
