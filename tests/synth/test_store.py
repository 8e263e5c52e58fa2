"""A world's samples in a saelab store: the rows are the sampler's batches in order, no row is a BOS, a rerun
of a complete store does nothing and a store of another world or seed is refused."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from saelab.store import ActivationStore, StoreMismatchError
from saelab.synth import sampler
from saelab.synth.store import HOOK, write_store


def test_store_rows_are_the_sampled_batches(world, tmp_path):
    path = write_store(world, tmp_path / "s", 2500, seed=4, batch=1000, shard_batches=1)
    store = ActivationStore(path)
    assert store.hooks == [HOOK] and store.n_tokens == 2500 and store.d_model == world.hidden_dim
    assert len(store.train_indices(False)) == 2500  # pos is 1 everywhere: nothing excluded as BOS
    draw = sampler(world, 1000)
    want = np.concatenate([np.asarray(draw(jax.random.fold_in(jax.random.key(4), i)).hidden) for i in range(3)])
    np.testing.assert_array_equal(np.asarray(store.activations(HOOK)[:]), want[:2500])
    np.testing.assert_array_equal(np.asarray(store.doc[:]), np.arange(2500))
    assert store.meta["synthetic_world"] == world.cfg.model_dump(mode="json")


def test_rerun_is_a_no_op_and_another_seed_is_refused(world, tmp_path):
    path = write_store(world, tmp_path / "s", 1000, seed=0, batch=500)
    before = (path / "manifest.json").read_text()
    write_store(world, path, 1000, seed=0, batch=500)
    assert (path / "manifest.json").read_text() == before
    with pytest.raises(StoreMismatchError):
        write_store(world, path, 1000, seed=1, batch=500)
    write_store(world, path, 1000, seed=1, batch=500, overwrite=True)
    assert ActivationStore(path).meta["synthetic_seed"] == 1
