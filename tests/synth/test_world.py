"""The world's deterministic parts equal SAELens's for the same config (Zipf probabilities, the forest and its
compensation, the mean magnitudes, the orthogonalisation from the same start); the random draws follow its
laws (unit features, bias norm, correlation factor with unit diagonal and rank r)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from saelab.synth import WorldConfig, preset
from saelab.synth import hierarchy as hier
from saelab.synth.world import mean_magnitudes, orthogonalize, zipf_probabilities
from tests.peer_modules import peer
from tests.synth.conftest import SMALL

sae_lens = peer("sae_lens")
from sae_lens.synthetic import (  # noqa: E402
    LinearMagnitudeConfig,
    SyntheticModelConfig,
    ZipfianFiringProbabilityConfig,
    generate_hierarchy,
    orthogonalize_embeddings,
)


def _their_hierarchy(cfg: WorldConfig):
    their = SyntheticModelConfig.from_dict(cfg.to_saelens())
    return generate_hierarchy(cfg.num_features, their.hierarchy, seed=cfg.seed + 3)


@pytest.mark.parametrize("portion", [1.0, 0.5])
def test_forest_and_compensated_probabilities_equal_saelens(portion):
    cfg = SMALL.model_copy(update={"exclusive_portion": portion})
    theirs = _their_hierarchy(cfg)
    ours = hier.generate_forest(cfg)
    assert ours == theirs.to_dict()["roots"]
    base = zipf_probabilities(cfg)
    fp = ZipfianFiringProbabilityConfig(exponent=cfg.zipf_exponent, max_prob=cfg.max_prob, min_prob=cfg.min_prob)
    their_base = fp.generate(cfg.num_features).numpy()
    np.testing.assert_allclose(base, their_base, rtol=1e-6)
    factor = hier.compensation(hier.build(ours, cfg.num_features), base)
    their_factor = theirs.compute_probability_correction_factors(torch.from_numpy(their_base)).numpy()
    np.testing.assert_allclose(factor, their_factor, rtol=1e-6)
    assert (factor > 1).sum() == cfg.hierarchy_size - cfg.hierarchy_roots  # every child, no root, no free feature


def test_the_16k_forest_is_the_papers():
    """SynthSAEBench-16k: 128 trees of 85 features, breadth-first: roots 0-127, leaves 2688-10879, every parent
    exclusive over its 4 children."""
    cfg = preset("synth-sae-bench-16k")
    h = hier.build(hier.generate_forest(cfg), cfg.num_features)
    assert cfg.hierarchy_size == 10_880
    assert [len(lv.features) for lv in h.levels] == [0, 512, 2048, 8192]
    assert h.levels[-1].features.min() == 2688 and h.levels[-1].features.max() == 10_879
    assert [lv.groups.shape for lv in h.levels] == [(128, 4), (512, 4), (2048, 4), (0, 0)]
    assert all(lv.block is not None for lv in h.levels)


def test_mean_magnitudes_equal_saelens():
    cfg = preset("small")
    theirs = LinearMagnitudeConfig(start=cfg.mean_magnitude_start, end=cfg.mean_magnitude_end).generate(4096)
    np.testing.assert_array_equal(mean_magnitudes(cfg), theirs.numpy())


def test_orthogonalize_equals_saelens_from_the_same_start():
    """The d x d Gram form of the loss gives SAELens's Adam trajectory (float32; 30 steps)."""
    start = np.random.default_rng(0).standard_normal((300, 24)).astype(np.float32)
    ours = np.asarray(orthogonalize(jnp.asarray(start), 30, 3e-3))
    theirs = orthogonalize_embeddings(torch.from_numpy(start), num_steps=30, lr=3e-3, chunk_size=128).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    overlap = lambda f: np.sum((f @ f.T - np.eye(len(f))) ** 2)  # the loss's off-diagonal part, at unit norms
    assert overlap(ours) < overlap(start / np.linalg.norm(start, axis=1, keepdims=True))


def test_world_draws_follow_the_recipe(world):
    cfg = world.cfg
    np.testing.assert_allclose(np.linalg.norm(np.asarray(world.features), axis=1), 1.0, rtol=1e-5)
    assert float(jnp.linalg.norm(world.bias)) == pytest.approx(cfg.bias_norm, rel=1e-5)
    F, D = np.asarray(world.corr_factor, np.float64), np.asarray(world.corr_diag, np.float64)
    assert F.shape == (cfg.num_features, cfg.correlation_rank)
    np.testing.assert_allclose(np.sum(F * F, axis=1) + D, 1.0, atol=1e-6)  # unit diagonal of F F^T + diag(D)
    assert D.min() >= 0.01 - 1e-6
    assert np.linalg.matrix_rank(F @ F.T) == cfg.correlation_rank
    assert F.std() == pytest.approx(cfg.correlation_scale, rel=0.05)
    std = np.asarray(world.std_mag)
    assert std.min() >= 0 and np.mean(std) == pytest.approx(_folded_mean(0.5, 0.5), rel=0.1)


def _folded_mean(mu: float, sigma: float) -> float:
    """E|X| for X ~ N(mu, sigma^2)."""
    from math import erf, exp, pi, sqrt

    return sigma * sqrt(2 / pi) * exp(-(mu**2) / (2 * sigma**2)) + mu * erf(mu / sqrt(2 * sigma**2))


def test_config_round_trips_through_saelens_json():
    cfg = preset("synth-sae-bench-16k")
    assert WorldConfig.from_saelens(cfg.to_saelens()) == cfg
    assert SyntheticModelConfig.from_dict(cfg.to_saelens()).to_dict() == cfg.to_saelens()
    with pytest.raises(ValueError, match="random branching_factor"):
        d = cfg.to_saelens()
        WorldConfig.from_saelens({**d, "hierarchy": {**d["hierarchy"], "branching_factor": [2, 4]}})


def test_config_rejects_impossible_probabilities():
    with pytest.raises(ValueError, match="below max_prob"):
        WorldConfig(min_prob=0.5, max_prob=0.4)
