"""A world SAELens generated and saved (`SyntheticModel.save`) loads into saelab with every array equal, and a
world saelab saved loads into SAELens.

Same samples for the same seed cannot be had: SAELens draws with torch's generator (and only at firing
positions), saelab with JAX's counter-based threefry, so the two streams of one seed are unrelated numbers.
What the test checks instead is that the loaded world is the same world (arrays equal) and that both
samplers draw from it the same distribution (firing rates and L0 within sampling error)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saelab.synth import batches, load_world, save_world
from saelab.synth.world import CONFIG_FILE
from tests.peer_modules import peer
from tests.synth.conftest import SMALL

sae_lens = peer("sae_lens")
from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig  # noqa: E402


@pytest.fixture(scope="module")
def saved_by_saelens(tmp_path_factory):
    model = SyntheticModel(SyntheticModelConfig.from_dict(SMALL.to_saelens()))
    path = tmp_path_factory.mktemp("world") / "saelens"
    model.save(path)
    return model, path


def test_saelens_world_loads_with_equal_arrays(saved_by_saelens):
    model, path = saved_by_saelens
    world = load_world(path)
    gen = model.activation_generator
    pairs = {
        "features": (world.features, model.feature_dict.feature_vectors),
        "bias": (world.bias, model.feature_dict.bias),
        "probs": (world.probs, gen.firing_probabilities),
        "corr_factor": (world.corr_factor, model.correlation_matrix.correlation_factor),
        "corr_diag": (world.corr_diag, model.correlation_matrix.correlation_diag),
        "mean_mag": (world.mean_mag, gen.mean_firing_magnitudes),
        "std_mag": (world.std_mag, gen.std_firing_magnitudes),
    }
    for name, (ours, theirs) in pairs.items():
        np.testing.assert_array_equal(np.asarray(ours), theirs.detach().numpy(), err_msg=name)
    assert world.hierarchy.roots == model.hierarchy.to_dict()["roots"]
    assert world.cfg == SMALL


def test_saelens_world_samples_have_saelens_distribution(saved_by_saelens):
    model, path = saved_by_saelens
    world, n = load_world(path), 32_000
    stream = batches(world, 4000, seed=5)
    ours = np.concatenate([np.asarray(next(stream).features) for _ in range(n // 4000)]) > 0
    torch.manual_seed(5)
    theirs = model.sample_with_features(n)[1].numpy() > 0
    r_o, r_t = ours.mean(0), theirs.mean(0)
    p = (r_o + r_t) / 2
    z = np.abs(r_o - r_t) / np.sqrt(np.maximum(2 * p * (1 - p) / n, 1e-12))
    assert z.max() < 5.5
    assert ours.sum(1).mean() == pytest.approx(theirs.sum(1).mean(), rel=0.02)


def test_saelab_world_loads_into_saelens(world, tmp_path):
    """SAELens reads features, bias, probabilities, correlation and forest; it regenerates the magnitude
    spreads from the config's seed instead of reading them (so those are its own draws, not ours)."""
    path = save_world(world, tmp_path / "ours")
    model = SyntheticModel.load_from_disk(path)
    np.testing.assert_array_equal(model.feature_dict.feature_vectors.detach().numpy(), np.asarray(world.features))
    np.testing.assert_array_equal(model.feature_dict.bias.detach().numpy(), np.asarray(world.bias))
    np.testing.assert_array_equal(model.activation_generator.firing_probabilities.numpy(), np.asarray(world.probs))
    np.testing.assert_array_equal(model.correlation_matrix.correlation_factor.numpy(), np.asarray(world.corr_factor))
    assert model.hierarchy.to_dict()["roots"] == world.hierarchy.roots
    back = load_world(path)  # and saelab reads its own spreads back
    np.testing.assert_array_equal(np.asarray(back.std_mag), np.asarray(world.std_mag))
    assert json.loads((path / CONFIG_FILE).read_text()) == SMALL.to_saelens()


def test_loading_a_non_world_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved synthetic world"):
        load_world(tmp_path)
