"""Weighted Jaccard against a hand computation; sparse scores equal the dense formulas; top-fraction rules."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from saelab.select.similarity import n_selected, score_dense, score_sparse, top_fraction, weighted_jaccard


def test_weighted_jaccard_by_hand():
    a = np.array([[1.0, 0.0, 2.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    b = np.array([0.5, 1.0, 1.0, 0.0], np.float32)
    # row 0: min = 0.5 + 0 + 1 = 1.5, max = 1 + 1 + 2 = 4 -> 0.375; row 1: min 1, max 0.5 + 3 + 1 = 4.5
    expected = [1.5 / 4.0, 1.0 / 4.5, 0.0]
    np.testing.assert_allclose(np.asarray(weighted_jaccard(a, b)), expected, rtol=1e-6)
    np.testing.assert_allclose(score_sparse(sp.csr_matrix(a), b, "jaccard"), expected, rtol=1e-6)


@pytest.mark.parametrize("similarity", ["jaccard", "cosine", "euclidean"])
def test_sparse_scores_match_dense(similarity):
    rng = np.random.default_rng(0)
    dense = rng.random((37, 50)).astype(np.float32) * (rng.random((37, 50)) < 0.1)  # ~10% non-zero, like codes
    dense[5] = 0.0  # an all-zero row
    proto = rng.random(50).astype(np.float32) * (rng.random(50) < 0.5)
    ref = {
        "jaccard": np.minimum(dense, proto).sum(1) / np.maximum(dense, proto).sum(1),
        "cosine": dense @ proto / np.maximum(np.linalg.norm(dense, axis=1) * np.linalg.norm(proto), 1e-30),
        "euclidean": -np.linalg.norm(dense - proto, axis=1),
    }[similarity]
    np.testing.assert_allclose(score_sparse(sp.csr_matrix(dense), proto, similarity), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(score_dense(dense, proto, similarity), ref, rtol=1e-5, atol=1e-6)


def test_jaccard_rejects_negative_values():
    with pytest.raises(ValueError, match="non-negative"):
        score_sparse(sp.csr_matrix(np.array([[1.0, -1.0]], np.float32)), np.ones(2, np.float32), "jaccard")


def test_top_fraction_counts_and_ties():
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.2, 0.0, 0.3, 0.8, 0.4, 0.6])
    assert list(top_fraction(scores, 0.3)) == [1, 3, 7]  # the tie 0.9/0.9: the seed-0 permutation puts 1 first
    assert n_selected(10, 0.01) == 1 and n_selected(1000, 0.05) == 50
    with pytest.raises(ValueError, match="ratio"):
        n_selected(10, 0.0)
