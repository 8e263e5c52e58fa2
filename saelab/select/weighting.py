"""Latent weighting of sample codes before the similarity (docs/selection.md, "The method"; not in MoNA).

- `idf`: latent j scaled by `idf_j = log((n + 1) / (df_j + 1))`, df_j = pool samples where j fires, so
  latents that fire on almost every sample do not dominate the Jaccard sums.
- `bm25`: BM25's term-frequency saturation (Robertson and Zaragoza 2009) on code values, times idf_j. A code
  is first put in units of its latent's typical firing, `y_ij = x_ij / s_j` with s_j the mean of latent j's
  non-zero pool values (codes of different latents have different scales; BM25's term counts share one),
  then `w_ij = idf_j * y_ij (k1 + 1) / (y_ij + k1 (1 - b + b len_i / avglen))` with `len_i = sum_j y_ij` the
  sample's code mass and avglen its pool mean. A latent that fires strongly counts little more than one that
  fires typically, and samples with much code mass are damped, as long documents are in BM25.
Target codes go through the same map with the pool's statistics (then the prototype is their mean).
`unit_mass` (code_norm = "l1") then scales each weighted code to sum 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from saelab.select.config import Weighting

__all__ = ["LatentStats", "Weighting", "latent_stats", "unit_mass", "weigh"]


class LatentStats(NamedTuple):
    """Pool statistics the weightings need."""

    n: int  # pool samples
    df: np.ndarray  # (width,) samples where the latent fires
    scale: np.ndarray  # (width,) mean non-zero value of the latent (1 where it never fires)
    avglen: float  # mean over samples of sum_j x_ij / scale_j

    @property
    def idf(self) -> np.ndarray:
        return np.log((self.n + 1) / (self.df + 1))


def latent_stats(parts: Callable[[], Iterable[sp.csr_matrix | np.ndarray]]) -> LatentStats:
    """Statistics of the pool's codes in two passes over its chunks (`parts()` yields them, e.g. cache.parts)."""
    n, df, total = 0, 0, 0
    for p in parts():
        p = sp.csr_matrix(p, dtype=np.float64)
        n += p.shape[0]
        df = df + np.asarray((p > 0).sum(0)).ravel()
        total = total + np.asarray(p.sum(0)).ravel()
    scale = np.where(df > 0, total / np.maximum(df, 1), 1.0)
    mass = sum(float((sp.csr_matrix(p, dtype=np.float64) @ (1.0 / scale)).sum()) for p in parts())
    return LatentStats(n, df, scale, mass / max(n, 1))


def weigh(
    rows: sp.csr_matrix | np.ndarray, stats: LatentStats, how: Weighting, k1: float = 1.2, b: float = 0.75
) -> sp.csr_matrix | np.ndarray:
    """Rows (m, width) of non-negative codes under a weighting; CSR stays CSR, dense stays dense (float32)."""
    if how == "none":
        return rows
    idf = stats.idf
    if how == "idf":
        return sp.csr_matrix(rows.multiply(idf[None])) if sp.issparse(rows) else (rows * idf).astype(np.float32)
    dense = not sp.issparse(rows)
    r = sp.csr_matrix(rows, dtype=np.float64)
    r.data = r.data / stats.scale[r.indices]  # y_ij
    length = np.asarray(r.sum(1)).ravel()  # (m,) code mass
    norm = k1 * (1 - b + b * length / max(stats.avglen, 1e-12))  # (m,)
    row_of = np.repeat(np.arange(r.shape[0]), np.diff(r.indptr))
    r.data = idf[r.indices] * r.data * (k1 + 1) / (r.data + norm[row_of])
    r = r.astype(np.float32)
    return r.toarray() if dense else r


def unit_mass(rows: sp.csr_matrix | np.ndarray) -> sp.csr_matrix | np.ndarray:
    """Rows (m, width) of non-negative codes each scaled to sum 1 (an all-zero row stays zero); CSR stays CSR."""
    if sp.issparse(rows):
        r = sp.csr_matrix(rows, dtype=np.float64)
        mass = np.asarray(r.sum(1)).ravel()
        r.data /= np.repeat(np.where(mass > 0, mass, 1.0), np.diff(r.indptr))
        return r.astype(np.float32)
    rows = np.asarray(rows, np.float64)
    mass = rows.sum(1, keepdims=True)
    return (rows / np.where(mass > 0, mass, 1.0)).astype(np.float32)
