"""Synthetic dictionaries and codes: unit atoms, distinct supports, the requested sparsity."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.atoms.synthetic import make_codes, make_dictionary, synthesize


@pytest.mark.parametrize(
    ("kind", "m", "d"), [("orthonormal", 8, 8), ("two_bases", 16, 8), ("simplex", 9, 8), ("gaussian", 50, 8)]
)
def test_dictionaries_have_unit_rows(kind, m, d):
    D = make_dictionary(m, d, kind, seed=0)
    assert D.shape == (m, d) and D.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(D, axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(D, make_dictionary(m, d, kind, seed=0))


def test_impossible_dictionaries_are_rejected():
    for args in [(9, 8, "orthonormal"), (12, 6, "two_bases"), (8, 8, "simplex"), (4, 4, "nope")]:
        with pytest.raises(ValueError):
            make_dictionary(*args)


@pytest.mark.parametrize(("m", "k"), [(1000, 30), (40, 30), (50, (0, 7))])
def test_codes_have_distinct_supports_of_the_requested_size(m, k):
    codes = make_codes(500, m, k, seed=1, nonneg=False)
    k_lo, k_hi = (k, k) if isinstance(k, int) else k
    active = codes.values != 0
    l0 = active.sum(1)
    assert l0.min() >= k_lo and l0.max() <= k_hi
    for row_idx, row_act in zip(codes.indices, active, strict=True):
        assert len(set(row_idx[row_act])) == row_act.sum()
    mags = np.abs(codes.values[active])
    assert mags.min() >= 0.5 and mags.max() <= 1.5 and (codes.values < 0).any()


def test_synthesize_is_codes_times_dictionary():
    D = make_dictionary(20, 8, "gaussian", seed=2)
    codes = make_codes(3000, 20, 3, seed=2)
    Z = np.zeros((3000, 20), np.float32)
    np.add.at(Z, (np.arange(3000)[:, None], codes.indices), codes.values)
    np.testing.assert_allclose(synthesize(D, codes), Z @ D, atol=1e-5)
