"""Generator statistics against the recipe and against SAELens's own sampler on the same world: firing rates,
true L0, magnitudes and co-firing; exclusivity and parent gating hold in every sample; the hierarchy step
equals SAELens's modifier wherever it is deterministic, and picks exclusive survivors uniformly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from saelab.synth import batches
from saelab.synth.sample import apply_level
from tests.peer_modules import peer

sae_lens = peer("sae_lens")
from sae_lens.synthetic import ActivationGenerator, Hierarchy  # noqa: E402

N_SAMPLES = 40_000


def _ours(world, n=N_SAMPLES, seed=0) -> np.ndarray:
    stream = batches(world, 4000, seed)
    return np.concatenate([np.asarray(next(stream).features) for _ in range(n // 4000)])


def _generator(world) -> ActivationGenerator:
    t = lambda a: torch.from_numpy(np.array(a))
    return ActivationGenerator(
        world.num_features,
        firing_probabilities=t(world.probs),
        std_firing_magnitudes=t(world.std_mag),
        mean_firing_magnitudes=t(world.mean_mag),
        modify_activations=Hierarchy.from_dict({"roots": world.hierarchy.roots}).modifier,
        correlation_matrix=(t(world.corr_factor), t(world.corr_diag)),
    )


@pytest.fixture(scope="module")
def both(world):
    torch.manual_seed(0)
    return _ours(world), _generator(world).sample(N_SAMPLES).numpy()


def test_firing_rates_l0_and_magnitudes_match_saelens_sampler(both):
    ours, theirs = both
    r_o, r_t = (ours > 0).mean(0), (theirs > 0).mean(0)
    p = (r_o + r_t) / 2
    z = np.abs(r_o - r_t) / np.sqrt(np.maximum(2 * p * (1 - p) / N_SAMPLES, 1e-12))
    assert z.max() < 5.5, f"feature {z.argmax()}: rate {r_o[z.argmax()]} vs SAELens {r_t[z.argmax()]}"
    assert r_o.sum() == pytest.approx(r_t.sum(), rel=0.02)  # true L0
    busy = np.flatnonzero(p > 0.05)
    mag_o = ours[:, busy].sum(0) / (ours[:, busy] > 0).sum(0)
    mag_t = theirs[:, busy].sum(0) / (theirs[:, busy] > 0).sum(0)
    np.testing.assert_allclose(mag_o, mag_t, rtol=0.05)


def test_co_firing_matches_saelens_sampler(both):
    """The copula's correlations (rank-8 factor) show in the co-firing of the busiest features."""
    ours, theirs = both
    busy = np.argsort(-(ours > 0).mean(0))[:30]
    c_o, c_t = (np.corrcoef((a[:, busy] > 0).T) for a in (ours, theirs))
    assert np.abs(c_o - c_t).max() < 0.06


def test_free_features_fire_at_their_probability(world, both):
    """Outside the forest nothing gates a feature: its rate is p_i (binomial error)."""
    ours, _ = both
    free = np.arange(world.cfg.hierarchy_size, world.num_features)
    p = np.asarray(world.probs, np.float64)[free]
    z = np.abs((ours[:, free] > 0).mean(0) - p) / np.sqrt(p * (1 - p) / N_SAMPLES)
    assert z.max() < 5.0


def test_children_need_their_parent_and_siblings_exclude_each_other(world, both):
    ours, _ = both
    on = ours > 0
    for lv in world.hierarchy.levels:
        assert not np.any(on[:, lv.features] & ~on[:, lv.parents]), "a child fired without its parent"
        if len(lv.groups):
            assert on[:, lv.groups].sum(-1).max() <= 1, "two exclusive siblings fired together"
    children = np.concatenate([lv.features for lv in world.hierarchy.levels])
    assert on[:, children].any(0).all(), "some child never fired: the test exercises no gating"


def test_hierarchy_step_equals_saelens_modifier_without_conflicts(world):
    """Gating and rescaling are deterministic: on inputs where no exclusive group has two active children,
    SAELens's modifier and ours agree to float32 rounding."""
    rng = np.random.default_rng(1)
    a = np.where(rng.random((3000, world.num_features)) < 0.5, rng.gamma(4.0, 1.0, (3000, world.num_features)), 0)
    a = a.astype(np.float32)
    for lv in world.hierarchy.levels:  # keep the first active child of every group only
        if len(lv.groups):
            on = a[:, lv.groups] > 0  # (b, g, s)
            later = np.cumsum(on, -1) > 1
            rows, grp, sib = np.nonzero(later & on)
            a[rows, lv.groups[grp, sib]] = 0
    ours = np.asarray(_apply(world, jnp.asarray(a), jax.random.key(0)))
    gen = _generator(world)
    theirs = gen.modify_activations(torch.from_numpy(a.copy()), gen).relu().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    assert (ours != a).any(), "no feature was gated: the test exercises nothing"


def test_exclusive_survivor_is_uniform(world):
    """Every child of every group active (and every parent): the survivor is each child 1/4 of the time."""
    a = jnp.ones((20_000, world.num_features))
    out = np.asarray(_apply(world, a, jax.random.key(2)))
    lv = next(lv for lv in world.hierarchy.levels if len(lv.groups))
    won = out[:, lv.groups] > 0  # (b, g, s)
    assert (won.sum(-1) == 1).all()
    freq = won.mean(0)  # (g, s)
    assert np.abs(freq - 1 / lv.groups.shape[1]).max() < 5 * np.sqrt(0.25 * 0.75 / 20_000)


def test_slices_and_gathers_give_the_same_samples(world):
    a = jnp.asarray(np.random.default_rng(3).gamma(2.0, 1.0, (500, world.num_features)), jnp.float32)
    key = jax.random.key(4)
    np.testing.assert_array_equal(np.asarray(_apply(world, a, key)), np.asarray(_apply(world, a, key, slices=False)))


def _apply(world, a, key, slices=True):
    for i, lv in enumerate(world.hierarchy.levels):
        a = apply_level(a, lv, world.mean_mag, jax.random.fold_in(key, i), slices)
    return jax.nn.relu(a)
