"""AIP metric: streaming moments, ridge warning, AIP = cosine after whitening, invariance under h -> A h."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from saelab.atoms.metric import aip, cosine, pair_angles
from saelab.whitening import estimate_metric, metric_from_activations, moment_matrix, moments_of, whiten


def _activations(n: int, d: int, seed: int, mean: float = 0.0) -> np.ndarray:
    """Anisotropic, correlated activations (n, d)."""
    rng = np.random.default_rng(seed)
    mix = (np.eye(d) + 0.3 * rng.standard_normal((d, d))) * np.logspace(0, 1, d)[None, :]
    return (rng.standard_normal((n, d)) @ mix + mean).astype(np.float32)


def test_streaming_moments_match_float64_with_a_large_mean():
    H = _activations(4000, 8, 0, mean=1000.0)  # (n, d); std ~ 30, mean 1000: float32 cancellation regime
    mom = moments_of(np.array_split(H, 7))
    H64 = H.astype(np.float64)
    np.testing.assert_allclose(moment_matrix(mom), H64.T @ H64 / len(H), rtol=1e-6)
    np.testing.assert_allclose(moment_matrix(mom, centred=True), np.cov(H64.T, bias=True), rtol=1e-5)


def test_metric_is_inverse_moment_and_whitening_is_its_square_root():
    H = _activations(3000, 6, 1)
    for centred in (False, True):
        met = metric_from_activations(H, batch=1000, centred=centred)
        M = np.cov(H.T, bias=True) if centred else H.T.astype(np.float64) @ H / len(H)
        np.testing.assert_allclose(met.S, np.linalg.inv(M), rtol=1e-4, atol=1e-5 * np.abs(met.S).max())
        W = np.asarray(met.whiten)
        np.testing.assert_allclose(W @ W, np.asarray(met.S), rtol=1e-4, atol=1e-6)
        Hc = H - H.mean(0) if centred else H
        Hw = np.asarray(whiten(Hc, met), np.float64)
        np.testing.assert_allclose(Hw.T @ Hw / len(H), np.eye(6), atol=1e-3)


def test_ill_conditioned_moment_matrix_warns_with_condition_number_and_gets_a_ridge():
    rng = np.random.default_rng(2)
    H = (rng.standard_normal((500, 4)) @ rng.standard_normal((4, 6))).astype(np.float32)  # rank 4 in d = 6
    mom = moments_of([H])
    with pytest.warns(UserWarning, match=r"condition number .* > max_cond 1e\+06"):
        met = estimate_metric(mom, max_cond=1e6)
    assert met.cond > 1e6 and met.ridge > 0
    ev = np.linalg.eigvalsh(moment_matrix(mom)) + met.ridge  # float64; S in float32 can't resolve cond 1e6
    assert ev[-1] / ev[0] == pytest.approx(1e6, rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate_metric(moments_of([_activations(500, 6, 3)]))


def test_aip_is_cosine_after_whitening_and_identity_metric_is_cosine():
    H = _activations(2000, 5, 4)
    met = metric_from_activations(H)
    rng = np.random.default_rng(5)
    U, V = rng.standard_normal((7, 5)), rng.standard_normal((3, 5))
    S = np.asarray(met.S, np.float64)
    ref = (U @ S @ V.T) / np.sqrt(np.einsum("id,de,ie->i", U, S, U)[:, None] * np.einsum("jd,de,je->j", V, S, V))
    np.testing.assert_allclose(aip(U, V, met), ref, atol=1e-5)
    Uw, Vw = np.asarray(whiten(U, met)), np.asarray(whiten(V, met))
    np.testing.assert_allclose(aip(U, V, met), np.asarray(cosine(Uw, Vw)), atol=1e-6)
    Un, Vn = U / np.linalg.norm(U, axis=1)[:, None], V / np.linalg.norm(V, axis=1)[:, None]
    np.testing.assert_allclose(aip(U, V, None), Un @ Vn.T, atol=1e-6)


@pytest.mark.parametrize("centred", [False, True])
def test_aip_invariant_under_invertible_maps_while_cosine_is_not(centred):
    d = 6
    H = _activations(5000, d, 6, mean=0.5)
    rng = np.random.default_rng(7)
    D = rng.standard_normal((10, d)).astype(np.float32)  # (m, d) dictionary directions
    A = rng.standard_normal((d, d)) + 2 * np.eye(d)  # random invertible map h -> A h
    H2, D2 = (H @ A.T).astype(np.float32), (D @ A.T).astype(np.float32)  # row form of h -> A h, u -> A u
    before = aip(D, D, metric_from_activations(H, centred=centred))
    after = aip(D2, D2, metric_from_activations(H2, centred=centred))
    np.testing.assert_allclose(after, before, atol=2e-4)
    assert np.abs(np.asarray(cosine(D2, D2)) - np.asarray(cosine(D, D))).max() > 0.1


def test_pair_angles_centre_on_90_degrees_under_aip_for_unrelated_directions():
    rng = np.random.default_rng(8)
    d = 32
    mix = np.eye(d) + 3.0  # strongly correlated coordinates: Euclidean angles bunch below 90 degrees
    H = (rng.standard_normal((20000, d)) @ mix).astype(np.float32)
    D = (rng.standard_normal((300, d)) @ mix).astype(np.float32)  # directions drawn like the activations
    met = metric_from_activations(H)
    off90 = lambda a: np.median(np.abs(np.asarray(a) - 90))
    assert off90(pair_angles(D, met, 5000)) < 15 < 60 < off90(pair_angles(D, None, 5000))
