"""The uniqueness bound mu < 1/(2K - 1) on hand-built cases, both per-atom definitions, and q*."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.atoms.codes import SparseCodes
from saelab.atoms.uniqueness import atom_unique, bound, q_star, uniqueness

# mu_i of 7 atoms, and 6 samples (supports) placed on either side of the bound 1/(2K - 1).
MU = np.array([0.3, 0.34, 0.1, 0.19, 0.21, 0.5, 0.05], np.float32)
SUPPORTS = [
    [0, 2],  # K=2, bound 1/3: mu 0.30 -> unique
    [1, 2],  # K=2, bound 1/3: mu 0.34 -> not unique
    [2, 3, 4],  # K=3, bound 1/5: mu 0.21 -> not unique
    [2, 3, 6],  # K=3, bound 1/5: mu 0.19 -> unique
    [5],  # K=1, bound 1: unique
    [],  # K=0: unique by convention
]


def _codes(dense: bool):
    Z = np.zeros((len(SUPPORTS), len(MU)), np.float32)
    for r, s in enumerate(SUPPORTS):
        Z[r, s] = -0.7
    if dense:
        return Z
    vals = np.zeros((len(SUPPORTS), 4), np.float32)
    idx = np.zeros((len(SUPPORTS), 4), np.int32)  # padding points at atom 0 with value 0
    for r, s in enumerate(SUPPORTS):
        vals[r, : len(s)], idx[r, : len(s)] = -0.7, s
    return SparseCodes(vals, idx)


def test_bound():
    np.testing.assert_allclose(bound(np.array([1, 2, 3, 10])), [1, 1 / 3, 1 / 5, 1 / 19])
    assert np.isinf(bound(np.array([0])))[0]


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("block", [4, 100])
def test_per_sample_and_per_atom_on_both_sides_of_the_bound(dense, block):
    u = uniqueness(MU, _codes(dense), block=block)
    np.testing.assert_array_equal(u.samples.l0, [2, 2, 3, 3, 1, 0])
    np.testing.assert_allclose(u.samples.mu, [0.3, 0.34, 0.21, 0.19, 0.5, 0.0])
    np.testing.assert_array_equal(u.samples.unique, [True, False, False, True, True, True])
    assert u.frac_samples_unique == pytest.approx(4 / 6)
    # every firing sample unique: atoms 0 (s0), 5 (s4), 6 (s3); atom 2 fires in s1, s2 which are not
    assert u.atom_definition == "all_samples"
    np.testing.assert_array_equal(u.atom_unique, [1, 0, 0, 0, 0, 1, 1])
    assert u.n_atoms_fired == 7 and u.frac_atoms_unique == pytest.approx(3 / 7)
    # median K: atom 2 (mu 0.1, K in {2,2,3,3}) and atom 3 (mu 0.19, K = 3) now count as unique
    np.testing.assert_array_equal(atom_unique(u.counts, "median_k"), [1, 0, 1, 1, 0, 1, 1])
    u_med = uniqueness(MU, _codes(dense), atom_definition="median_k", block=block)
    assert u_med.frac_atoms_unique == pytest.approx(5 / 7)
    assert "frac_atoms_unique[median_k]" in u_med.summary()


def test_median_k_uses_the_lower_median():
    mu = np.array([0.3, 0.0, 0.0, 0.0, 0.0], np.float32)
    # atom 0 fires with K = 2 (0.3 < 1/3) and K = 5 (0.3 > 1/9): lower median K = 2 -> unique
    Z = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    assert bool(atom_unique(uniqueness(mu, Z).counts, "median_k")[0])
    Z3 = np.concatenate([Z, Z[1:]])  # K in {2, 5, 5}: median 5 -> not unique
    assert not bool(atom_unique(uniqueness(mu, Z3).counts, "median_k")[0])


def test_atoms_that_never_fire_are_left_out():
    Z = np.zeros((3, 4), np.float32)
    Z[:, 0] = 1.0
    u = uniqueness(np.full(4, 0.2, np.float32), Z)
    assert u.n_atoms_fired == 1 and u.frac_atoms_unique == 1.0 and not u.atom_unique[1:].any()


def test_q_star():
    n = 10_000
    l0 = np.repeat(np.arange(1, 11), n // 10)  # K_q = 1 + 9 q (approximately)
    # mu = 0.1 everywhere: 0.1 < 1/(2K - 1) iff K < 5.5 iff q < 0.5
    assert q_star(np.full(n, 0.1), l0).q == pytest.approx(0.5, abs=2e-3)
    assert q_star(np.full(n, 0.9), np.full(n, 2)).q == 0.0  # bound 1/3 never met
    assert q_star(np.full(n, 0.01), l0).q == 1.0
    # coupled quantiles: the q-th sample has both the q-quantile mu and K
    qs = q_star(np.linspace(0.0, 0.5, n), np.linspace(1, 3, n))
    assert qs.mu_q < 1 / (2 * qs.k_q - 1)
    assert qs.q == pytest.approx((-0.5 + np.sqrt(8.25)) / 4, abs=2e-3)  # solves 0.5 q = 1/(1 + 4 q)


def test_predicate_matches_the_known_bound_on_a_synthetic_dictionary():
    # two orthonormal bases in R^64: every mu_i = 1/8, so a K-sparse code is unique iff 1/8 < 1/(2K - 1), K <= 4
    from saelab.atoms.coherence import coherence
    from saelab.atoms.synthetic import make_codes, make_dictionary

    D = make_dictionary(128, 64, "two_bases", seed=0)
    codes = make_codes(2000, 128, (1, 9), seed=1, nonneg=False)
    u = uniqueness(coherence(D).per_atom, codes, block=512)
    l0 = (codes.values != 0).sum(1)
    np.testing.assert_array_equal(u.samples.l0, l0)
    np.testing.assert_array_equal(u.samples.unique, l0 <= 4)
    assert u.frac_samples_unique == pytest.approx(np.mean(l0 <= 4))
    assert 0.4 < u.frac_samples_unique < 0.6  # both sides of the bound are exercised
