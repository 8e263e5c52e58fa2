"""The loader: global shuffle, exact resume, process and device sharding."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from saelab.store import ActivationLoader, ActivationStore, StoreWriter
from saelab.store.shuffle import permute

D = 4


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ActivationStore:
    path = tmp_path_factory.mktemp("store") / "s"
    n = 1000
    w = StoreWriter.create_or_resume(path, meta={}, hooks=["h"], d_model=D, dtype="float32", shard_tokens=128)
    x = np.repeat(np.arange(n, dtype=np.float32)[:, None], D, axis=1)  # row i holds the value i
    w.append({"h": x}, np.arange(n), np.arange(n) // 50, np.arange(n) % 50)
    w.finalize()
    return ActivationStore(path)


def test_permutation_is_a_bijection_for_any_size() -> None:
    for n in (1, 2, 7, 64, 1000, 4099):
        for epoch in (0, 1):
            assert np.array_equal(np.sort(permute(np.arange(n), n, 3, epoch)), np.arange(n))


def test_every_token_exactly_once_per_epoch(store) -> None:
    loader = ActivationLoader(store, "h", 64, seed=1)
    train = store.train_indices()
    assert len(train) == 980  # BOS (pos 0) excluded by default
    seen = np.concatenate([next(loader).idx for _ in range(2 * loader.epoch_length)])
    first, second = seen[:980], seen[980:1960]
    assert np.array_equal(np.sort(first), train) and np.array_equal(np.sort(second), train)
    assert not np.array_equal(first, second)  # a new order each epoch
    b = next(ActivationLoader(store, "h", 64, seed=1))
    np.testing.assert_array_equal(np.asarray(b.x)[:, 0], b.idx.astype(np.float32))  # rows match indices
    assert len(np.unique(b.idx // 128)) > 3  # one batch mixes many shards


def test_restored_state_continues_exactly(store) -> None:
    a = ActivationLoader(store, "h", 64, seed=5)
    for _ in range(7):
        next(a)
    state = a.get_state()
    rest = [next(a).idx for _ in range(20)]
    b = ActivationLoader(store, "h", 64, seed=5)
    b.set_state(state)
    for want in rest:
        np.testing.assert_array_equal(next(b).idx, want)
    with pytest.raises(ValueError, match="seed"):
        ActivationLoader(store, "h", 64, seed=6).set_state(state)


def test_processes_take_disjoint_halves_of_each_global_batch(store) -> None:
    full = ActivationLoader(store, "h", 64, seed=2, process_index=0, process_count=1)
    p0 = ActivationLoader(store, "h", 64, seed=2, process_index=0, process_count=2)
    p1 = ActivationLoader(store, "h", 64, seed=2, process_index=1, process_count=2)
    for _ in range(3):
        g, a, b = next(full).idx, next(p0).idx, next(p1).idx
        np.testing.assert_array_equal(np.concatenate([a, b]), g)


def test_batches_shard_over_four_devices(store) -> None:
    code = textwrap.dedent(f"""
        import numpy as np, jax
        from jax.sharding import Mesh
        from saelab.store import ActivationStore, ActivationLoader
        assert jax.device_count() == 4
        mesh = Mesh(np.array(jax.devices()).reshape(4, 1), ("data", "model"))
        loader = ActivationLoader(ActivationStore({str(store.path)!r}), "h", 64, seed=0, mesh=mesh)
        b = next(loader)
        assert b.x.shape == (64, {D}) and len(b.x.addressable_shards) == 4
        rows = [np.asarray(s.data) for s in sorted(b.x.addressable_shards, key=lambda s: s.index[0].start)]
        assert all(r.shape == (16, {D}) for r in rows)
        np.testing.assert_array_equal(np.concatenate(rows)[:, 0], b.idx.astype(np.float32))
        print("ok")
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
