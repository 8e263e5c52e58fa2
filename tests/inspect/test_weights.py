"""Logit lens against the model's full forward head, and nearest latents against a dense similarity matrix."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.atoms import Metric, aip
from saelab.inspect.weights import logit_lens, nearest
from saelab.models import Model
from saelab.models.transformer import unembed


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.load("smollm2-135m")


def test_logit_lens_is_the_models_own_head(model) -> None:
    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((5, model.cfg.d_model)).astype(np.float32)
    lens = logit_lens(model, dirs, k=7, chunk=2)  # chunk that does not divide the rows
    full = np.asarray(unembed(model.params, model.cfg, jnp.asarray(dirs)[:, None]))[:, 0]
    for r in range(5):
        order = np.argsort(-full[r])
        np.testing.assert_array_equal(lens.positive.index[r], order[:7])
        np.testing.assert_array_equal(lens.negative.index[r], order[::-1][:7])
        np.testing.assert_allclose(lens.positive.value[r], full[r, order[:7]], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(lens.negative.value[r], full[r, order[::-1][:7]], rtol=1e-4, atol=1e-4)


def test_nearest_by_cosine_and_aip() -> None:
    rng = np.random.default_rng(1)
    D = rng.standard_normal((50, 8)).astype(np.float32)
    D[7] = 3 * D[3] + 0.01 * D[9]  # 7 and 3 nearly parallel
    rows = np.array([3, 0, 49, 7])
    got = nearest(rows, D, k=4, chunk=3)
    Dn = D / np.linalg.norm(D, axis=1, keepdims=True)
    cos = Dn @ Dn.T
    np.fill_diagonal(cos, -np.inf)
    for r, i in enumerate(rows):
        np.testing.assert_array_equal(got.index[r], np.argsort(-cos[i], kind="stable")[:4])
        np.testing.assert_allclose(got.value[r], np.sort(cos[i])[::-1][:4], rtol=1e-5)
    assert got.index[0, 0] == 7 and got.index[3, 0] == 3
    A = rng.standard_normal((8, 8)).astype(np.float32)
    S = A @ A.T + np.eye(8, dtype=np.float32)
    w, V = np.linalg.eigh(S)
    metric = Metric(jnp.asarray(S), jnp.asarray((V * np.sqrt(w)) @ V.T), jnp.zeros(8), 1.0, 0.0, False, 1.0)
    got = nearest(rows, D, k=4, metric=metric)
    want = np.array(aip(jnp.asarray(D), jnp.asarray(D), metric))
    np.fill_diagonal(want, -np.inf)
    for r, i in enumerate(rows):
        np.testing.assert_array_equal(got.index[r], np.argsort(-want[i], kind="stable")[:4])
