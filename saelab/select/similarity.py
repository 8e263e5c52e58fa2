"""Similarity of sample embeddings to a target prototype and top-fraction selection (docs/selection.md, "The method").

Sample embeddings of SAE codes are sparse (a short sample fires a few hundred of thousands of latents), so
they travel as CSR rows; the scores below touch only the stored non-zeros. Weighted Jaccard
`J(a, b) = sum_k min(a_k, b_k) / sum_k max(a_k, b_k)` is computed as `m / (sum a + sum b - m)` with
`m = sum_k min(a_k, b_k)`, which is exact for non-negative vectors and needs only a's non-zeros
(min(a_k, b_k) = 0 wherever a_k = 0). Cosine and Euclidean are the paper's ablations.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from saelab.select.config import Aggregation

Similarity = Literal["jaccard", "cosine", "euclidean"]

__all__ = [
    "Aggregation",
    "aggregate",
    "Similarity",
    "score_sparse",
    "score_dense",
    "weighted_jaccard",
    "cosine",
    "neg_euclidean",
    "top_fraction",
    "n_selected",
    "rank_order",
    "tie_keys",
    "top_latents",
]


def weighted_jaccard(a: jax.Array, b: jax.Array) -> jax.Array:
    """(n,) weighted Jaccard of each non-negative row of a (n, d) with b (d,); 0 where both are all zero."""
    num = jnp.minimum(a, b).sum(-1)
    den = jnp.maximum(a, b).sum(-1)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """(n,) cosine of each row of a (n, d) with b (d,); 0 for a zero row."""
    den = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b)
    return jnp.where(den > 0, a @ b / jnp.where(den > 0, den, 1.0), 0.0)


def neg_euclidean(a: jax.Array, b: jax.Array) -> jax.Array:
    """(n,) minus the Euclidean distance of each row of a (n, d) to b (d,): larger is closer."""
    return -jnp.linalg.norm(a - b, axis=-1)


def score_dense(rows: np.ndarray, proto: np.ndarray, similarity: Similarity) -> np.ndarray:
    """(n,) float32 scores of dense rows (n, d) against the prototype (d,). Computed in float64 and rounded to
    float32, so a row's score does not depend on its place in the chunk (a float32 matmul's last bits do, and
    equal embeddings must tie exactly for the seeded tie-break to decide)."""
    a, b = np.asarray(rows, np.float64), np.asarray(proto, np.float64)
    if similarity == "jaccard":
        num, den = np.minimum(a, b).sum(-1), np.maximum(a, b).sum(-1)
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    elif similarity == "cosine":
        den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b)
        out = np.where(den > 0, a @ b / np.where(den > 0, den, 1.0), 0.0)
    else:
        out = -np.linalg.norm(a - b, axis=-1)
    return out.astype(np.float32)


def score_sparse(rows: sp.csr_matrix, proto: np.ndarray, similarity: Similarity) -> np.ndarray:
    """(n,) scores of CSR rows (n, d) against a dense prototype (d,), touching only the stored non-zeros."""
    rows = sp.csr_matrix(rows)
    n = rows.shape[0]
    if rows.shape[1] != proto.shape[0]:
        raise ValueError(f"embedding width {rows.shape[1]} != prototype width {proto.shape[0]}")
    if similarity == "jaccard" and (rows.data.min(initial=0) < 0 or proto.min(initial=0) < 0):
        raise ValueError("weighted Jaccard needs non-negative embeddings (SAE codes after their activation)")
    nnz = rows.nnz
    size = 1 << max(nnz - 1, 1).bit_length()  # pad to a power of two: few compiled shapes for any chunk
    vals = np.zeros(size, np.float32)
    idx = np.zeros(size, np.int32)
    seg = np.zeros(size, np.int32)  # padding adds 0 to row 0 in every sum below
    vals[:nnz] = rows.data
    idx[:nnz] = rows.indices
    seg[:nnz] = np.repeat(np.arange(n, dtype=np.int32), np.diff(rows.indptr))
    out = _sparse_scores(
        jnp.asarray(vals), jnp.asarray(idx), jnp.asarray(seg), jnp.asarray(proto, jnp.float32), n, similarity
    )
    return np.asarray(out)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _sparse_scores(
    vals: jax.Array, idx: jax.Array, seg: jax.Array, proto: jax.Array, n: int, similarity: str
) -> jax.Array:
    p = proto[idx]  # (nnz,) prototype at each stored entry
    if similarity == "jaccard":
        m = jax.ops.segment_sum(jnp.minimum(vals, p), seg, n)  # (n,) sum_k min(a_k, b_k)
        s = jax.ops.segment_sum(vals, seg, n)  # (n,) sum_k a_k
        den = s + proto.sum() - m  # sum_k max(a_k, b_k)
        return jnp.where(den > 0, m / jnp.where(den > 0, den, 1.0), 0.0)
    dot = jax.ops.segment_sum(vals * p, seg, n)
    sq = jax.ops.segment_sum(vals * vals, seg, n)
    if similarity == "cosine":
        den = jnp.sqrt(sq) * jnp.linalg.norm(proto)
        return jnp.where(den > 0, dot / jnp.where(den > 0, den, 1.0), 0.0)
    return -jnp.sqrt(jnp.maximum(sq + (proto * proto).sum() - 2 * dot, 0.0))


def n_selected(n: int, ratio: float) -> int:
    """How many of n records a ratio keeps: round(ratio * n), at least 1."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    return max(1, min(n, round(ratio * n)))


def tie_keys(raw: Sequence[bytes], seed: int = 0) -> np.ndarray:
    """(n,) uint64 seeded hash of each record's bytes: a random order of the records for a seed that does not
    depend on where a record sits in the file (equal lines get equal keys, and their order cannot matter)."""
    salt = int(seed).to_bytes(8, "little", signed=True)
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(salt + r, digest_size=8).digest(), "little") for r in raw),
        np.uint64,
        len(raw),
    )


def rank_order(scores: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
    """Indices of all records, best score first; tied scores are ordered by `keys` (tie_keys), so never by
    file order. Without keys, ties follow a seed-0 random permutation of the positions."""
    scores = np.asarray(scores, np.float64)
    if keys is None:
        keys = np.random.default_rng(0).permutation(len(scores))
    if len(keys) != len(scores):
        raise ValueError(f"{len(keys)} tie keys for {len(scores)} scores")
    return np.lexsort((keys, -scores))


def top_fraction(scores: np.ndarray, ratio: float, keys: np.ndarray | None = None) -> np.ndarray:
    """Indices of the top `ratio` of the scores, best first; ties broken by `keys` (see rank_order)."""
    return rank_order(scores, keys)[: n_selected(len(scores), ratio)]


def aggregate(per_target: np.ndarray, how: Aggregation, m: int = 2) -> np.ndarray:
    """(n,) record scores from (n_targets, n) per-target similarities: their mean, their max, or the mean of
    each record's top `m` (topm; all of them when m >= n_targets). Embedding methods do `mean` as MoNA does,
    by one prototype (the mean target embedding) instead: see scoring.score_cached."""
    s = np.asarray(per_target, np.float64)
    if s.ndim != 2:
        raise ValueError(f"per-target scores must be (n_targets, n), got shape {s.shape}")
    if how == "mean":
        return s.mean(0)
    if how == "max":
        return s.max(0)
    if m < 1:
        raise ValueError(f"top_m must be >= 1, got {m}")
    return np.sort(s, axis=0)[-min(m, len(s)) :].mean(0)


def top_latents(rows: np.ndarray, keep: int) -> np.ndarray:
    """Dense rows (k, width) with all but each row's `keep` largest entries zeroed (ties at the cut: the lower
    index kept, so exactly `keep` survive)."""
    rows = np.asarray(rows)
    if keep >= rows.shape[1]:
        return rows
    idx = np.argsort(-rows, axis=1, kind="stable")[:, :keep]
    out = np.zeros_like(rows)
    np.put_along_axis(out, idx, np.take_along_axis(rows, idx, axis=1), axis=1)
    return out
