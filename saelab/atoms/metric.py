"""The atomic inner product (AIP) of Hu et al. (arXiv 2509.20784, docs/methods.md, "Atoms").

Representations are defined only up to an invertible linear map h -> A h, so angles are measured in the metric
`S = (E[h h^T])^-1` (or the inverse covariance with `centred=True`), estimated from activations:
`<u, v>_S = u^T S v / (||u||_S ||v||_S)`. With the symmetric whitening matrix `W = S^(1/2)` this is the plain
cosine of `W u` and `W v`. Under h -> A h and u -> A u, S becomes A^-T S A^-1 and the AIP is unchanged.

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

from saelab.store import ActivationStore

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


def metric_from_store(
    store: ActivationStore,
    hook: str,
    *,
    tokens: int | None = None,
    min_position: int = 0,
    centred: bool = False,
    max_cond: float = 1e6,
    batch: int = 8192,
) -> Metric:
    """The metric of a store's activations at `hook`: its first `tokens` tokens at window positions
    >= min_position (all of them with tokens=None), streamed in row batches (the separate sample of the paper)."""
    idx = np.flatnonzero(np.asarray(store.pos) >= min_position)[:tokens]
    if len(idx) < 2:
        raise ValueError(f"store {store.path} has {len(idx)} tokens at positions >= {min_position}; need >= 2")
    view = store.activations(hook)
    batches = (view.take(idx[i : i + batch], np.float32) for i in range(0, len(idx), batch))
    return estimate_metric(moments_of(batches), centred=centred, max_cond=max_cond)


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


def aip(U: jax.Array, V: jax.Array, metric: Metric | None) -> jax.Array:
    """(len(U), len(V)) matrix of <u, v>_S / (||u||_S ||v||_S); with metric=None the Euclidean cosine.

    Zero vectors get AIP 0 with everything.
    """
    return _cosines(whiten(U, metric), whiten(V, metric))


def cosine(U: jax.Array, V: jax.Array) -> jax.Array:
    """(len(U), len(V)) Euclidean cosines, the baseline the AIP is compared with."""
    return aip(U, V, None)


def pair_angles(D: jax.Array, metric: Metric | None, n_pairs: int = 100_000, seed: int = 0) -> jax.Array:
    """(n_pairs,) angles in degrees between random distinct atom pairs (i != j), for the AIP vs Euclidean
    histograms of docs/methods.md, "Atoms" (unrelated directions centre on 90 degrees under AIP)."""
    m = D.shape[0]
    if m < 2:
        raise ValueError("need at least two atoms")
    ki, kj = jax.random.split(jax.random.PRNGKey(seed))
    i = jax.random.randint(ki, (n_pairs,), 0, m)
    j = (i + jax.random.randint(kj, (n_pairs,), 1, m)) % m
    Dw = normalise(whiten(D, metric))  # (m, d)
    c = jnp.sum(Dw[i] * Dw[j], -1)
    return jnp.degrees(jnp.arccos(jnp.clip(c, -1.0, 1.0)))


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


@jax.jit
def _cosines(U: jax.Array, V: jax.Array) -> jax.Array:
    return jnp.matmul(normalise(U), normalise(V).T, precision=HIGHEST)
