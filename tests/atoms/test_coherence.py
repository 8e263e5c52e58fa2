"""Blocked coherence against brute force and against dictionaries of known coherence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saelab.atoms.coherence import coherence
from saelab.atoms.synthetic import known_coherence, make_dictionary
from saelab.whitening import metric_from_activations, whiten


def _brute_force(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Dn = D / np.linalg.norm(D, axis=1, keepdims=True)
    G = np.abs(Dn.astype(np.float64) @ Dn.T.astype(np.float64))
    np.fill_diagonal(G, -1)
    return G.max(1), G.argmax(1)


@pytest.mark.parametrize(("m", "block", "col_block"), [(37, 8, 16), (32, 8, 8), (37, 64, 5), (5, 2, 3)])
def test_blocked_equals_brute_force_for_any_block_sizes(m, block, col_block):
    D = np.random.default_rng(m).standard_normal((m, 8)).astype(np.float32)
    c = coherence(D, block=block, col_block=col_block)
    mu_i, nn = _brute_force(D)
    np.testing.assert_allclose(c.per_atom, mu_i, atol=1e-6)
    np.testing.assert_array_equal(c.nearest, nn)
    np.testing.assert_allclose(np.abs(c.nearest_aip), c.per_atom)
    assert c.mu == pytest.approx(mu_i.max(), abs=1e-6)


def test_coherence_in_a_metric_is_coherence_of_the_whitened_dictionary():
    rng = np.random.default_rng(0)
    H = (rng.standard_normal((3000, 8)) @ (np.eye(8) + 0.5 * rng.standard_normal((8, 8)))).astype(np.float32)
    met = metric_from_activations(H)
    D = rng.standard_normal((21, 8)).astype(np.float32)
    c = coherence(D, met, block=4)
    mu_i, nn = _brute_force(np.asarray(whiten(D, met)))
    np.testing.assert_allclose(c.per_atom, mu_i, atol=1e-5)
    np.testing.assert_array_equal(c.nearest, nn)


@pytest.mark.parametrize(
    ("kind", "m", "d"),
    [("orthonormal", 20, 32), ("two_bases", 128, 64), ("simplex", 17, 16), ("two_bases", 96, 64)],
)
def test_known_coherence(kind, m, d):
    c = coherence(make_dictionary(m, d, kind, seed=3), block=16)
    mu = known_coherence(m, d, kind)
    assert c.mu == pytest.approx(mu, abs=1e-6)
    if kind == "two_bases":
        assert mu == pytest.approx(1 / math.sqrt(d))
        np.testing.assert_allclose(c.per_atom, 1 / math.sqrt(d), atol=1e-6)  # every atom meets the other basis


def test_bfloat16_matmul_is_close_to_float32():
    D = make_dictionary(300, 64, "gaussian", seed=1)
    exact, approx = coherence(D), coherence(D, precision="bfloat16")
    assert np.abs(np.asarray(approx.per_atom) - np.asarray(exact.per_atom)).max() < 1e-2


def test_rejects_a_single_atom():
    with pytest.raises(ValueError, match="m >= 2"):
        coherence(np.ones((1, 4), np.float32))
