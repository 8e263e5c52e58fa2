"""A small SynthSAEBench world (the recipe at 512 features in d = 48, 4 trees) shared by the synth tests."""

from __future__ import annotations

import pytest

from saelab.synth import WorldConfig, make_world

SMALL = WorldConfig(
    num_features=512, hidden_dim=48, hierarchy_roots=4, correlation_rank=8, orthogonalize_steps=20, seed=3
)


@pytest.fixture(scope="session")
def world():
    return make_world(SMALL)
