"""Whitening in the metric of the activations: streaming moments, the metric S = (E[h h^T])^-1 (or the inverse
covariance) and its symmetric square root W = S^(1/2), so that dot products of whitened rows `x @ W` are
`<u, v>_S`. The atoms' AIP (`saelab.atoms.metric`) and the inspector's dashboards both stand on it.

Streaming estimate: each batch is reduced on the device in float32 to sums of `h - c` and `(h - c)(h - c)^T`,
where c is the mean of the first batch (the shifted-data algorithm: subtracting a point near the mean avoids
the cancellation of `E[h h^T] - mu mu^T` when activations have a large mean). Batch sums are added in float64
on the host, so the estimate does not degrade with the number of batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST


class Moments(NamedTuple):
    """Streaming first and second moments of activations, float64 on the host."""

    n: float  # rows seen
    shift: np.ndarray  # (d,) c, the mean of the first batch
    sum_x: np.ndarray  # (d,) sum of (h - c)
    sum_xx: np.ndarray  # (d, d) sum of (h - c)(h - c)^T


class Metric(NamedTuple):
    """The AIP metric S and its symmetric square root, with how it was estimated."""

    S: jax.Array  # (d, d) (M + ridge I)^-1, M = E[h h^T] or Cov[h]
    whiten: jax.Array  # (d, d) W = S^(1/2), symmetric; whitened rows are x @ W
    mean: jax.Array  # (d,) E[h]
    cond: float  # condition number lambda_max / lambda_min of M before the ridge (inf if singular)
    ridge: float  # added to every eigenvalue of M
    centred: bool  # M is the covariance (True) or the raw second moment (False)
    n: float  # activations the estimate used


def accumulate(moments: Moments | None, H: jax.Array) -> Moments:
    """Add a batch of activations H (n, d) to the running moments."""
    if H.ndim != 2:
        raise ValueError(f"activations must be (n, d), got {H.shape}")
    if moments is None:
        shift = np.asarray(jnp.mean(jnp.asarray(H, jnp.float32), 0), np.float64)  # (d,)
        moments = Moments(0.0, shift, np.zeros_like(shift), np.zeros((shift.size, shift.size)))
    elif H.shape[1] != moments.shift.size:
        raise ValueError(f"batch has d={H.shape[1]}, moments d={moments.shift.size}")
    s, ss = _batch_sums(jnp.asarray(H), jnp.asarray(moments.shift, jnp.float32))
    return Moments(
        moments.n + H.shape[0],
        moments.shift,
        moments.sum_x + np.asarray(s, np.float64),
        moments.sum_xx + np.asarray(ss, np.float64),
    )


def moments_of(batches: Iterable[jax.Array]) -> Moments:
    """Moments of a stream of (n_b, d) activation batches."""
    moments = None
    for H in batches:
        moments = accumulate(moments, H)
    if moments is None:
        raise ValueError("no activation batches")
    return moments


def moment_matrix(moments: Moments, centred: bool = False) -> np.ndarray:
    """(d, d) float64: E[h h^T], or Cov[h] = E[(h - mu)(h - mu)^T] when centred."""
    n, c = moments.n, moments.shift
    p = moments.sum_xx / n  # E[(h - c)(h - c)^T]
    e = moments.sum_x / n  # E[h] - c
    if centred:
        return p - np.outer(e, e)
    return p + np.outer(c, e) + np.outer(e, c) + np.outer(c, c)


def estimate_metric(
    moments: Moments, *, centred: bool = False, max_cond: float = 1e6, ridge: float | None = None
) -> Metric:
    """S = (M + ridge I)^-1 with M = E[h h^T] (or Cov[h]); eigendecomposition in float64.

    Without an explicit `ridge`, a matrix with condition number above `max_cond` gets the smallest ridge that
    brings it down to `max_cond`, with a warning naming both numbers.
    """
    if max_cond <= 1:
        raise ValueError(f"max_cond must exceed 1, got {max_cond}")
    M = moment_matrix(moments, centred)  # (d, d)
    evals, evecs = np.linalg.eigh(M)
    lo, hi = float(evals[0]), float(evals[-1])
    if hi <= 0:
        raise ValueError("the second-moment matrix is zero: no signal to define a metric")
    cond = hi / lo if lo > 0 else float("inf")
    if ridge is None:
        ridge = 0.0
        if cond > max_cond:
            ridge = (hi - max_cond * lo) / (max_cond - 1)
            warnings.warn(
                f"AIP metric: the {'covariance' if centred else 'second-moment'} matrix is ill-conditioned "
                f"(condition number {cond:.3g} > max_cond {max_cond:.3g}); adding ridge {ridge:.3g} * I "
                f"(largest eigenvalue {hi:.3g}) so the regularised matrix has condition number "
                f"{max_cond:.3g}",
                stacklevel=2,
            )
    ev = evals + ridge
    if ev[0] <= 0:
        raise ValueError(f"ridge {ridge} leaves a non-positive eigenvalue {ev[0]:.3g}")
    S = (evecs / ev) @ evecs.T
    W = (evecs / np.sqrt(ev)) @ evecs.T
    mean = moments.shift + moments.sum_x / moments.n
    return Metric(
        S=jnp.asarray(S, jnp.float32),
        whiten=jnp.asarray(W, jnp.float32),
        mean=jnp.asarray(mean, jnp.float32),
        cond=cond,
        ridge=float(ridge),
        centred=centred,
        n=moments.n,
    )


def metric_from_activations(H: jax.Array, *, batch: int = 8192, centred: bool = False, max_cond: float = 1e6) -> Metric:
    """The metric of an in-memory activation matrix H (n, d), accumulated in row batches."""
    return estimate_metric(
        moments_of(H[i : i + batch] for i in range(0, H.shape[0], batch)), centred=centred, max_cond=max_cond
    )


def identity_metric(d: int) -> Metric:
    """The Euclidean metric S = I (AIP = cosine)."""
    eye = jnp.eye(d, dtype=jnp.float32)
    return Metric(S=eye, whiten=eye, mean=jnp.zeros(d), cond=1.0, ridge=0.0, centred=False, n=0.0)


def whiten(X: jax.Array, metric: Metric | None) -> jax.Array:
    """Rows of X (n, d) mapped to x @ W, W = S^(1/2); dot products of the results are <., .>_S.

    Linear only: subtracting a mean or a decoder bias from activations is the caller's choice.
    """
    if metric is None:
        return jnp.asarray(X, jnp.float32)
    if X.shape[-1] != metric.whiten.shape[0]:
        raise ValueError(f"vectors have d={X.shape[-1]}, metric d={metric.whiten.shape[0]}")
    return _matmul(jnp.asarray(X, jnp.float32), metric.whiten)


@jax.jit
def normalise(X: jax.Array) -> jax.Array:
    """Rows scaled to unit norm; zero rows stay zero."""
    n = jnp.linalg.norm(X, axis=-1, keepdims=True)
    return X / jnp.where(n > 0, n, 1.0)


@jax.jit
def _batch_sums(H: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = H.astype(jnp.float32) - c  # (n, d)
    return x.sum(0), jnp.matmul(x.T, x, precision=HIGHEST)


@jax.jit
def _matmul(X: jax.Array, W: jax.Array) -> jax.Array:
    return jnp.matmul(X, W, precision=HIGHEST)
