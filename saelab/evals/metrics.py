"""Reconstruction and sparsity metrics of docs/methods.md ("Metric definitions"), as streaming sums.

Each batch is reduced to sums on the device (`batch_sums`), sums add up across batches, and `finish`
turns them into the reported numbers, so an eval of any length uses constant memory.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

N_DENSITY_BINS = 40


class Sums(NamedTuple):
    """Per-batch sums (float64 on the host after `to_host`)."""

    n: jax.Array  # tokens
    sse: jax.Array  # sum ||x - x_hat||^2
    sum_x: jax.Array  # (d,) sum of x, for SST = sum ||x||^2 - n ||mean||^2
    sum_sq: jax.Array  # sum ||x||^2
    cos: jax.Array  # sum cos(x, x_hat)
    l0: jax.Array  # sum of active latents
    l1: jax.Array  # sum |codes|
    shrink: jax.Array  # sum ||x_hat|| / ||x||
    fires: jax.Array  # (d_sae,) tokens on which each latent fired


def batch_sums(x: jax.Array, x_hat: jax.Array, codes: jax.Array) -> Sums:
    """x, x_hat: (n, d); codes: (n, d_sae) of the same tokens (BOS already removed)."""
    x = x.astype(jnp.float32)
    x_hat = x_hat.astype(jnp.float32)
    nx = jnp.linalg.norm(x, axis=-1)
    nh = jnp.linalg.norm(x_hat, axis=-1)
    active = codes != 0
    return Sums(
        n=jnp.asarray(x.shape[0], jnp.float32),
        sse=jnp.sum(jnp.square(x - x_hat)),
        sum_x=x.sum(0),
        sum_sq=jnp.sum(nx**2),
        cos=jnp.sum(jnp.sum(x * x_hat, -1) / jnp.maximum(nx * nh, 1e-12)),
        l0=active.sum().astype(jnp.float32),
        l1=jnp.abs(codes).sum().astype(jnp.float32),
        shrink=jnp.sum(nh / jnp.maximum(nx, 1e-12)),
        fires=active.sum(0).astype(jnp.float32),
    )


def add(a: Sums | None, b: Sums) -> Sums:
    b = Sums(*(np.asarray(v, np.float64) for v in b))
    return b if a is None else Sums(*(x + y for x, y in zip(a, b, strict=False)))


class DensityHistogram(NamedTuple):
    """Histogram of log10 firing densities of the latents that fired, and how many never did."""

    counts: list[int]  # N_DENSITY_BINS bins over [-8, 0]
    edges: list[float]  # N_DENSITY_BINS + 1 bin edges
    never_fired: int


class ReconMetrics(NamedTuple):
    """The reported reconstruction and sparsity metrics, each per token unless named otherwise
    (docs/methods.md, "Metric definitions")."""

    tokens: int
    explained_variance: float  # 1 - SSE / SST (R^2)
    nmse: float  # SSE / sum ||x||^2
    mse: float  # per token, summed over dimensions
    cosine: float
    l0: float
    l1: float
    shrinkage: float  # mean ||x_hat|| / ||x||
    dead_fraction: float  # never fired on these tokens
    dense_fraction: float  # fired on more than `dense_threshold` of them
    density_log10_histogram: DensityHistogram

    def as_json(self) -> dict[str, Any]:
        """The flat dict an eval JSON holds (its keys, in this order)."""
        return self._asdict() | {"density_log10_histogram": self.density_log10_histogram._asdict()}


def finish(s: Sums, dense_threshold: float = 0.1) -> ReconMetrics:
    """The reported metrics from accumulated sums."""
    n = float(s.n)
    sst = float(s.sum_sq) - float(np.sum(s.sum_x**2)) / n
    density = s.fires / n
    hist, edges = np.histogram(np.log10(density[density > 0]), bins=N_DENSITY_BINS, range=(-8, 0))
    return ReconMetrics(
        tokens=int(n),
        explained_variance=1.0 - float(s.sse) / sst,
        nmse=float(s.sse) / float(s.sum_sq),
        mse=float(s.sse) / n,
        cosine=float(s.cos) / n,
        l0=float(s.l0) / n,
        l1=float(s.l1) / n,
        shrinkage=float(s.shrink) / n,
        dead_fraction=float(np.mean(s.fires == 0)),
        dense_fraction=float(np.mean(density > dense_threshold)),
        density_log10_histogram=DensityHistogram(hist.tolist(), edges.tolist(), int(np.sum(s.fires == 0))),
    )


def max_decoder_cosine(w_dec: jax.Array, block: int = 4096) -> np.ndarray:
    """Each latent's maximum cosine to any other decoder row, computed in row blocks (no full Gram in memory)."""
    w = w_dec / jnp.maximum(jnp.linalg.norm(w_dec, axis=-1, keepdims=True), 1e-12)  # (d_sae, d)

    @jax.jit
    def block_max(start):
        rows = jax.lax.dynamic_slice_in_dim(w, start, block)  # (block, d)
        g = rows @ w.T  # (block, d_sae)
        idx = start + jnp.arange(block)
        g = jnp.where(idx[:, None] == jnp.arange(w.shape[0])[None, :], -jnp.inf, g)
        return g.max(-1)

    d_sae = w.shape[0]
    block = min(block, d_sae)
    starts = list(range(0, d_sae - block + 1, block))
    if d_sae % block:
        starts.append(d_sae - block)
    out = np.empty(d_sae, np.float32)
    for s in starts:
        out[s : s + block] = np.asarray(block_max(s))
    return out
