"""FISTA / LASSO recovery: exact on orthonormal dictionaries, support recovery on both sides of the bound."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.atoms.codes import SparseCodes
from saelab.atoms.coherence import coherence
from saelab.atoms.recovery import fista, lipschitz, recover
from saelab.atoms.synthetic import make_codes, make_dictionary, synthesize
from saelab.atoms.uniqueness import uniqueness
from saelab.whitening import metric_from_activations


def test_lipschitz_is_the_top_eigenvalue():
    D = np.random.default_rng(0).standard_normal((50, 12)).astype(np.float32)
    top = np.linalg.eigvalsh(D.astype(np.float64) @ D.T)[-1]
    assert lipschitz(D) == pytest.approx(top, rel=2e-3) and lipschitz(D) >= top


@pytest.mark.parametrize("nonneg", [False, True])
def test_fista_on_an_orthonormal_dictionary_is_soft_thresholding(nonneg):
    rng = np.random.default_rng(1)
    D = make_dictionary(16, 16, "orthonormal", seed=1)
    X = rng.standard_normal((5, 16)).astype(np.float32)
    c, lam = X @ D.T, 0.3
    ref = np.maximum(c - lam, 0) if nonneg else np.sign(c) * np.maximum(np.abs(c) - lam, 0)
    np.testing.assert_allclose(fista(X, D, lam, lipschitz(D), n_iter=50, nonneg=nonneg), ref, atol=1e-5)


def test_recovers_supports_when_the_bound_holds():
    d = 64
    D = make_dictionary(2 * d, d, "two_bases", seed=2)  # mu = 1/8: unique for K < 4.5
    codes = make_codes(300, 2 * d, 4, seed=3, nonneg=False)
    X = synthesize(D, codes)
    assert uniqueness(coherence(D).per_atom, codes).frac_samples_unique == 1.0
    r = recover(X, D, codes, lam=1e-3, relative=False, n_iter=300, support_tol=1e-3, block=128)
    assert r.precision == 1.0 and r.recall == 1.0 and r.exact_support == 1.0
    assert r.l0_recovered == r.l0_reference == 4.0 and r.recon.r2 > 0.999


def test_recovery_under_a_metric_works_in_the_whitened_space():
    rng = np.random.default_rng(4)
    d = 32
    A = np.eye(d) + 0.4 * rng.standard_normal((d, d))  # activations and atoms seen through h -> A h
    D = make_dictionary(2 * d, d, "two_bases", seed=4) @ A.T
    codes = make_codes(2000, 2 * d, 2, seed=5, nonneg=True)
    X = synthesize(D.astype(np.float32), codes)
    met = metric_from_activations(X)
    r = recover(X, D, codes, metric=met, lam=0.02, nonneg=True, n_iter=300, support_tol=1e-3)
    assert r.recall == 1.0 and r.precision > 0.99 and r.recon.r2 > 0.99


def test_detects_failure_when_the_bound_does_not_hold():
    # Donoho-Elad's extremal case: 8 spikes on a subgroup of F_2^6 (indices 0..7) equal 8 Hadamard atoms
    # (the annihilator, indices 64 + 8j) in R^64, so the 8-sparse code is not unique: mu = 1/8 >= 1/(2*8 - 1).
    d = 64
    D = make_dictionary(2 * d, d, "two_bases", seed=6)
    spikes = SparseCodes(np.ones((1, 8), np.float32), np.arange(8, dtype=np.int32)[None])
    hadamard = SparseCodes(np.ones((1, 8), np.float32), (d + 8 * np.arange(8, dtype=np.int32))[None])
    X = synthesize(D, spikes)
    np.testing.assert_allclose(X, synthesize(D, hadamard), atol=1e-5)
    u = uniqueness(coherence(D).per_atom, spikes)
    assert not bool(u.samples.unique[0]) and u.frac_samples_unique == 0.0
    r = recover(X, D, spikes, lam=1e-3, relative=False, n_iter=300, support_tol=1e-3)
    assert r.exact_support == 0.0 and r.precision < 1.0
