"""Reciprocal rank fusion (Cormack, Clarke and Buettcher 2009): `score_i = sum_m 1 / (k + rank_m(i))` over the
fused methods' rankings (rank 1 = best, ties broken by the records' tie keys), k = 60 as in the paper. It
needs no score calibration between methods as different as SAE-code Jaccard and BM25."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from saelab.select.similarity import rank_order

RRF_K = 60

__all__ = ["RRF_K", "reciprocal_rank_fusion"]


def reciprocal_rank_fusion(scores: Sequence[np.ndarray], keys: np.ndarray | None = None, k: int = RRF_K) -> np.ndarray:
    """(n,) fused scores of several (n,) score vectors of the same records."""
    if not scores:
        raise ValueError("reciprocal rank fusion needs at least one ranking")
    out = np.zeros(len(scores[0]), np.float64)
    for s in scores:
        rank = np.empty(len(s), np.int64)
        rank[rank_order(s, keys)] = np.arange(1, len(s) + 1)
        out += 1.0 / (k + rank)
    return out
