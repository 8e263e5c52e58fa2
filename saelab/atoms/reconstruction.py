"""Sparse reconstruction R^2 of a dictionary with its codes (docs/methods.md, "Metric definitions").

`R^2 = 1 - SSE / SST` with SSE = sum ||x - x_hat||^2, SST = sum ||x - mean(x)||^2, x_hat = z D (+ bias);
also the normalised MSE `SSE / sum ||x||^2`. Streaming: per-block sums of x - c (c = the first block's mean,
so SST does not cancel when activations have a large mean) are reduced on the device and added in float64
on the host.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.atoms.codes import Codes, SparseCodes, check, rows
from saelab.whitening import HIGHEST, Metric, whiten


class ReconSums(NamedTuple):
    """Running sums (float64 on the host)."""

    n: float
    shift: np.ndarray  # (d,) c
    sse: float  # sum ||x - x_hat||^2
    sum_x: np.ndarray  # (d,) sum (x - c)
    sum_sq: float  # sum ||x - c||^2
    sum_raw_sq: float  # sum ||x||^2


class Reconstruction(NamedTuple):
    r2: float  # 1 - SSE / SST, SST = sum ||x - mean(x)||^2
    nmse: float  # SSE / sum ||x||^2
    n: int  # samples

    def summary(self) -> dict[str, tuple[float, str]]:
        """name -> (value, definition)."""
        return {
            "r2": (self.r2, "1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2"),
            "nmse": (self.nmse, "sum ||x - x_hat||^2 / sum ||x||^2"),
        }


def reconstruct(codes: Codes, D: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """(n, d) x_hat = z D (+ bias) from dense (n, m) or sparse codes and a dictionary D (m, d)."""
    x_hat = _sparse_decode(codes, D) if isinstance(codes, SparseCodes) else _dense_decode(codes, D)
    return x_hat if bias is None else x_hat + bias


def add_batch(sums: ReconSums | None, X: jax.Array, X_hat: jax.Array) -> ReconSums:
    """Add the sums of a batch X, X_hat (n, d)."""
    if X.shape != X_hat.shape:
        raise ValueError(f"X {X.shape} and X_hat {X_hat.shape} differ in shape")
    if sums is None:
        shift = np.asarray(jnp.mean(jnp.asarray(X, jnp.float32), 0), np.float64)
        sums = ReconSums(0.0, shift, 0.0, np.zeros_like(shift), 0.0, 0.0)
    sse, sx, sq, raw = _sums(jnp.asarray(X), jnp.asarray(X_hat), jnp.asarray(sums.shift, jnp.float32))
    return ReconSums(
        sums.n + X.shape[0],
        sums.shift,
        sums.sse + float(sse),
        sums.sum_x + np.asarray(sx, np.float64),
        sums.sum_sq + float(sq),
        sums.sum_raw_sq + float(raw),
    )


def finish(sums: ReconSums) -> Reconstruction:
    sst = sums.sum_sq - float(np.sum(sums.sum_x**2)) / sums.n
    return Reconstruction(
        r2=1 - sums.sse / sst if sst > 0 else float("nan"),
        nmse=sums.sse / sums.sum_raw_sq if sums.sum_raw_sq > 0 else float("nan"),
        n=int(sums.n),
    )


def sparse_r2(
    X: jax.Array, codes: Codes, D: jax.Array, bias: jax.Array | None = None, *, block: int = 1024
) -> Reconstruction:
    """R^2 and NMSE of x_hat = z D (+ bias) against activations X (n, d), in blocks of samples."""
    check(codes, D.shape[0], X.shape[0])
    sums = None
    for s in range(0, X.shape[0], block):
        e = min(s + block, X.shape[0])
        sums = add_batch(sums, X[s:e], reconstruct(rows(codes, s, e), D, bias))
    if sums is None:
        raise ValueError("no samples")
    return finish(sums)


def whitened_r2(X: jax.Array, X_hat: jax.Array, metric: Metric, *, block: int = 4096) -> Reconstruction:
    """R^2 in the AIP space: 1 - sum ||(x - x_hat) W||^2 / sum ||(x - mean(x)) W||^2, W = S^(1/2) (and the
    NMSE there), for activations X and reconstructions X_hat (n, d)."""
    if X.shape != X_hat.shape:
        raise ValueError(f"X {X.shape} and X_hat {X_hat.shape} differ in shape")
    sums = None
    for s in range(0, X.shape[0], block):
        e = min(s + block, X.shape[0])
        sums = add_batch(sums, whiten(X[s:e], metric), whiten(X_hat[s:e], metric))
    if sums is None:
        raise ValueError("no samples")
    return finish(sums)


@jax.jit
def _sparse_decode(codes: SparseCodes, D: jax.Array) -> jax.Array:
    return jnp.einsum("nk,nkd->nd", codes.values, D[codes.indices], precision=HIGHEST)


@jax.jit
def _dense_decode(Z: jax.Array, D: jax.Array) -> jax.Array:
    return jnp.matmul(Z, D, precision=HIGHEST)


@jax.jit
def _sums(X: jax.Array, X_hat: jax.Array, c: jax.Array) -> tuple[jax.Array, ...]:
    X, X_hat = X.astype(jnp.float32), X_hat.astype(jnp.float32)
    xc = X - c
    return jnp.sum(jnp.square(X - X_hat)), xc.sum(0), jnp.sum(xc * xc), jnp.sum(X * X)
