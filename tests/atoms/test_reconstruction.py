"""Sparse reconstruction R^2 = 1 - SSE/SST, streaming, dense and sparse codes."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.atoms.codes import SparseCodes
from saelab.atoms.reconstruction import reconstruct, sparse_r2


def test_hand_computed_r2():
    X = np.array([[1.0, 0.0], [3.0, 0.0]], np.float32)  # mean (2, 0), SST = 2
    D = np.eye(2, dtype=np.float32)
    Z = np.array([[1.0, 0.0], [2.0, 0.0]], np.float32)  # SSE = 1
    r = sparse_r2(X, Z, D)
    assert r.r2 == pytest.approx(0.5) and r.nmse == pytest.approx(1 / 10) and r.n == 2
    bias = np.array([1.0, 0.0], np.float32)  # x_hat = (2, 0), (3, 0): SSE = 1
    assert sparse_r2(X, Z, D, bias).r2 == pytest.approx(0.5)


def test_streaming_sparse_and_dense_agree_with_a_large_mean():
    rng = np.random.default_rng(0)
    n, m, d, k = 1000, 40, 8, 3
    D = rng.standard_normal((m, d)).astype(np.float32)
    idx = np.stack([rng.choice(m, k, replace=False) for _ in range(n)]).astype(np.int32)
    vals = rng.uniform(0.5, 1.5, (n, k)).astype(np.float32)
    vals[:, -1] = 0.0  # padding entries
    Z = np.zeros((n, m), np.float32)
    np.add.at(Z, (np.arange(n)[:, None], idx), vals)
    bias = np.full(d, 500.0, np.float32)
    X = Z @ D + bias + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    X64, Xh64 = X.astype(np.float64), Z.astype(np.float64) @ D + bias
    ref = 1 - ((X64 - Xh64) ** 2).sum() / ((X64 - X64.mean(0)) ** 2).sum()
    np.testing.assert_allclose(reconstruct(SparseCodes(vals, idx), D, bias), reconstruct(Z, D, bias), atol=1e-3)
    for codes in (Z, SparseCodes(vals, idx)):
        assert sparse_r2(X, codes, D, bias, block=300).r2 == pytest.approx(ref, abs=1e-5)
