"""Sampled RIP constants against dictionaries whose delta_K is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saelab.atoms.rip import rip_constant
from saelab.atoms.synthetic import make_dictionary


def test_orthonormal_dictionary_is_an_isometry():
    r = rip_constant(make_dictionary(24, 32, "orthonormal", seed=0), 6, n_subsets=200, batch=64)
    assert r.delta == pytest.approx(0.0, abs=1e-5)
    assert r.s2_min == pytest.approx(1.0, abs=1e-5) and r.s2_max == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("k", [2, 3, 6])
def test_simplex_frame_has_delta_k_minus_1_over_d(k):
    d = 16  # every K-subset Gram is (1 + 1/d) I - 11^T / d: eigenvalues 1 + 1/d and 1 - (K - 1)/d
    r = rip_constant(make_dictionary(d + 1, d, "simplex", seed=1), k, n_subsets=100, batch=64)
    assert r.delta == pytest.approx((k - 1) / d, abs=1e-5)
    np.testing.assert_allclose(r.per_subset, (k - 1) / d, atol=1e-5)


def test_two_bases_pairs_within_sampling_error():
    d, n = 32, 4000
    r = rip_constant(make_dictionary(2 * d, d, "two_bases", seed=2), 2, n_subsets=n, batch=1000)
    assert r.delta == pytest.approx(1 / math.sqrt(d), abs=1e-5)
    # a pair straddling the two bases has delta = 1/sqrt(d), a pair within one basis 0
    cross = (r.subsets[:, 0] < d) != (r.subsets[:, 1] < d)
    np.testing.assert_allclose(np.where(cross, 1 / math.sqrt(d), 0.0), r.per_subset, atol=1e-5)
    p = d * d / math.comb(2 * d, 2)  # probability of a straddling pair
    assert abs(float(np.mean(cross)) - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert all(len(set(s)) == 2 for s in np.asarray(r.subsets).tolist())
