"""Synthetic dictionaries with known coherence and K-sparse codes, the ground truth of the atoms tests.

Dictionary kinds (rows are unit vectors; every kind but "orthonormal" and "gaussian" is randomly rotated,
which leaves all inner products unchanged):
- "orthonormal": m <= d rows of a random orthogonal matrix; mu = 0.
- "two_bases": the identity and the normalised Sylvester-Hadamard basis (d a power of 2, m = 2d, or the
  first m of those rows); mu = 1/sqrt(d), the smallest possible for a union of two orthonormal bases
  (Donoho-Elad), so K-sparse codes are unique for K < (1 + sqrt(d)) / 2.
- "simplex": the m = d + 1 vertices of a regular simplex, an equiangular tight frame with every
  <d_i, d_j> = -1/d; mu = 1/d and every K-subset has the same Gram matrix, so delta_K = (K - 1)/d exactly.
- "gaussian": m independent random unit vectors; mu is whatever it comes out as (about sqrt(4 log m / d)).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from saelab.atoms.codes import SparseCodes

Kind = Literal["orthonormal", "two_bases", "simplex", "gaussian"]


def make_dictionary(m: int, d: int, kind: Kind = "gaussian", seed: int = 0) -> np.ndarray:
    """(m, d) float32 dictionary with unit rows (see the module docstring for each kind's coherence)."""
    rng = np.random.default_rng(seed)
    if kind == "orthonormal":
        if m > d:
            raise ValueError(f"an orthonormal dictionary needs m <= d, got m={m}, d={d}")
        D = _rotation(d, rng)[:m]
    elif kind == "two_bases":
        if d & (d - 1) or m > 2 * d:
            raise ValueError(f"two_bases needs d a power of 2 and m <= 2d, got m={m}, d={d}")
        D = np.concatenate([np.eye(d), _hadamard(d) / math.sqrt(d)])[:m] @ _rotation(d, rng)
    elif kind == "simplex":
        if m != d + 1:
            raise ValueError(f"a simplex frame has m = d + 1, got m={m}, d={d}")
        e = np.eye(m) - 1.0 / m  # (m, m) vertices centred on the origin; they span a d-dim subspace
        basis = np.linalg.svd(e)[2][:d]  # (d, m) orthonormal basis of that subspace
        D = (e @ basis.T) @ _rotation(d, rng)
    elif kind == "gaussian":
        D = rng.standard_normal((m, d))
    else:
        raise ValueError(f"unknown dictionary kind {kind!r}")
    return (D / np.linalg.norm(D, axis=1, keepdims=True)).astype(np.float32)


def known_coherence(m: int, d: int, kind: Kind) -> float | None:
    """The exact coherence of `make_dictionary(m, d, kind)`, or None where it is random."""
    if kind == "orthonormal":
        return 0.0
    if kind == "two_bases":
        return 1 / math.sqrt(d) if m > d else 0.0
    if kind == "simplex":
        return 1 / d
    return None


def make_codes(
    n: int,
    m: int,
    k: int | tuple[int, int],
    seed: int = 0,
    *,
    scale: tuple[float, float] = (0.5, 1.5),
    nonneg: bool = True,
) -> SparseCodes:
    """n codes over m atoms, each with k distinct active atoms chosen uniformly (or, for k = (k_lo, k_hi),
    a uniform per-sample k in [k_lo, k_hi]), magnitudes uniform in `scale` (bounded away from 0 so supports
    are identifiable), random signs unless nonneg. Rows shorter than k_hi are padded with value 0."""
    k_lo, k_hi = (k, k) if isinstance(k, int) else k
    if not 0 <= k_lo <= k_hi <= m:
        raise ValueError(f"need 0 <= k_lo <= k_hi <= m, got k={k}, m={m}")
    rng = np.random.default_rng(seed)
    idx = _distinct_indices(n, m, k_hi, rng)  # (n, k_hi)
    vals = rng.uniform(*scale, (n, k_hi))
    if not nonneg:
        vals *= rng.choice([-1.0, 1.0], (n, k_hi))
    ks = rng.integers(k_lo, k_hi + 1, n)  # (n,)
    vals[np.arange(k_hi)[None, :] >= ks[:, None]] = 0.0
    return SparseCodes(vals.astype(np.float32), idx.astype(np.int32))


def synthesize(D: np.ndarray, codes: SparseCodes, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """(n, d) float32 activations x = z D + noise * N(0, I)."""
    X = np.concatenate(
        [
            np.einsum("nk,nkd->nd", codes.values[i : i + 1024], D[codes.indices[i : i + 1024]])
            for i in range(0, len(codes.values), 1024)
        ]
    )
    if noise:
        X = X + noise * np.random.default_rng(seed).standard_normal(X.shape)
    return X.astype(np.float32)


def _distinct_indices(n: int, m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n, k) indices, distinct within a row, uniform over k-subsets (in random order)."""
    if k * k > m:  # rejection would resample most rows; shuffle row blocks instead
        return np.concatenate([np.argsort(rng.random((min(1024, n - i), m)), axis=1)[:, :k] for i in range(0, n, 1024)])
    idx = rng.integers(0, m, (n, k))
    while True:
        s = np.sort(idx, axis=1)
        bad = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(1))
        if bad.size == 0:
            return idx
        idx[bad] = rng.integers(0, m, (bad.size, k))


def _rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _hadamard(d: int) -> np.ndarray:
    h = np.ones((1, 1))
    while h.shape[0] < d:
        h = np.block([[h, h], [h, -h]])
    return h
