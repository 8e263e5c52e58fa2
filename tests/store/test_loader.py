"""The loader: global shuffle, exact resume, process and device sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest

from saelab.store import ActivationLoader, ActivationStore, StoreWriter
from saelab.store.shuffle import permute

D = 4
N = 1000
CONTEXT = 50


def _make(path, dtype: str) -> ActivationStore:
    """Row i of the store holds the value i in every dimension, so a batch's rows name their indices."""
    w = StoreWriter.create_or_resume(path, meta={}, hooks=["h"], d_model=D, dtype=dtype, shard_tokens=128)
    x = np.repeat(np.arange(N, dtype=np.float32)[:, None], D, axis=1)
    w.append({"h": x}, np.arange(N), np.arange(N) // CONTEXT, np.arange(N) % CONTEXT)
    w.finalize()
    return ActivationStore(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ActivationStore:
    return _make(tmp_path_factory.mktemp("store") / "s", "float32")


def test_permutation_is_a_bijection_for_any_size() -> None:
    for n in (1, 2, 3, 7, 64, 1000, 4099):
        for epoch in (0, 1):
            assert np.array_equal(np.sort(permute(np.arange(n), n, 3, epoch)), np.arange(n))
    assert not np.array_equal(permute(np.arange(1000), 1000, 3, 0), permute(np.arange(1000), 1000, 4, 0))


def test_every_token_exactly_once_per_epoch(store) -> None:
    loader = ActivationLoader(store, "h", 64, seed=1)
    train = store.train_indices()
    assert len(train) == 980 and loader.epoch_length == 16  # BOS (pos 0) excluded by default
    # 64 does not divide 980: batches run on across the epoch boundary, so the stream cut into 980s is exact
    seen = np.concatenate([next(loader).idx for _ in range(3 * loader.epoch_length)])
    epochs = [seen[e * 980 : (e + 1) * 980] for e in range(3)]
    for e in epochs:
        np.testing.assert_array_equal(np.sort(e), train)
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    assert not np.isin(np.arange(0, N, CONTEXT), seen).any()


def test_batch_rows_are_the_indexed_tokens_from_many_shards(store) -> None:
    b = next(ActivationLoader(store, "h", 64, seed=1))
    assert isinstance(b.x, jax.Array) and b.x.shape == (64, D) and b.x.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(b.x), np.repeat(b.idx.astype(np.float32)[:, None], D, 1))
    assert len(np.unique(b.idx // 128)) > 3  # one batch mixes many of the 8 shards


def test_bfloat16_store_and_options(tmp_path) -> None:
    s = _make(tmp_path / "s", "bfloat16")
    b = next(ActivationLoader(s, "h", 32, include_bos=True))
    want = b.idx.astype(ml_dtypes.bfloat16).astype(np.float32)  # the store rounds the values to bf16
    np.testing.assert_array_equal(np.asarray(b.x)[:, 0], want)
    assert b.x.dtype == np.float32
    assert next(ActivationLoader(s, "h", 32, dtype=ml_dtypes.bfloat16)).x.dtype == ml_dtypes.bfloat16
    full = ActivationLoader(s, "h", 100, include_bos=True)
    assert np.isin(np.arange(0, N, CONTEXT), np.concatenate([next(full).idx for _ in range(10)])).all()
    sub = ActivationLoader(s, "h", 10, indices=np.arange(500, 530))
    got = np.concatenate([next(sub).idx for _ in range(3)])
    np.testing.assert_array_equal(np.sort(got), np.arange(500, 530))


def test_restored_state_continues_exactly(store) -> None:
    a = ActivationLoader(store, "h", 64, seed=5)
    for _ in range(7):
        next(a)
    state = json.loads(json.dumps(a.get_state()))  # as a checkpoint stores it
    assert state["step"] == 7 and state["epoch"] == 0 and state["seed"] == 5
    rest = [next(a).idx for _ in range(20)]  # runs into the second epoch
    for b in (ActivationLoader(store, "h", 64, seed=5), a):  # a fresh loader, and one already further on
        b.set_state(state)
        for want in rest:
            np.testing.assert_array_equal(next(b).idx, want)
    assert a.get_state()["epoch"] == 1
    with pytest.raises(ValueError, match="seed 5 in the state, 6 here"):
        ActivationLoader(store, "h", 64, seed=6).set_state(state)
    with pytest.raises(ValueError, match="n_train 980 in the state, 1000 here"):
        ActivationLoader(store, "h", 64, seed=5, include_bos=True).set_state(state)


def test_processes_take_disjoint_halves_of_each_global_batch(store) -> None:
    full = ActivationLoader(store, "h", 64, seed=2, process_index=0, process_count=1)
    p0 = ActivationLoader(store, "h", 64, seed=2, process_index=0, process_count=2)
    p1 = ActivationLoader(store, "h", 64, seed=2, process_index=1, process_count=2)
    for _ in range(3):
        g, a, b = next(full), next(p0), next(p1)
        assert a.x.shape == b.x.shape == (32, D) and not np.intersect1d(a.idx, b.idx).size
        np.testing.assert_array_equal(np.concatenate([a.idx, b.idx]), g.idx)
        np.testing.assert_array_equal(np.concatenate([np.asarray(a.x), np.asarray(b.x)]), np.asarray(g.x))
    with pytest.raises(ValueError, match="not divisible by 3 processes"):
        ActivationLoader(store, "h", 64, process_index=0, process_count=3)


def test_batches_shard_over_four_devices(store) -> None:
    code = textwrap.dedent(f"""
        import numpy as np, jax, pytest
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from saelab.store import ActivationStore, ActivationLoader
        assert jax.device_count() == 4
        mesh = Mesh(np.array(jax.devices()).reshape(4, 1), ("data", "model"))
        store = ActivationStore({str(store.path)!r})
        b = next(ActivationLoader(store, "h", 64, seed=0, mesh=mesh))
        assert b.x.shape == (64, {D})
        assert b.x.sharding.is_equivalent_to(NamedSharding(mesh, P("data", None)), 2)
        rows = [np.asarray(s.data) for s in sorted(b.x.addressable_shards, key=lambda s: s.index[0].start)]
        assert len(rows) == 4 and all(r.shape == (16, {D}) for r in rows)
        np.testing.assert_array_equal(np.concatenate(rows)[:, 0], b.idx.astype(np.float32))
        np.testing.assert_array_equal(b.idx, next(ActivationLoader(store, "h", 64, seed=0)).idx)
        with pytest.raises(ValueError, match="not divisible by the mesh's data axis"):
            ActivationLoader(store, "h", 66, mesh=mesh)
        print("ok")
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_reader_threads_run_at_lower_priority_and_read_ahead(store) -> None:
    """The batches are read by grain's threads (not the caller's), each niced by `reader_nice` so that it
    does not preempt the step's compute threads, and read ahead of the batch asked for; the caller keeps
    its own priority."""
    seen: list[tuple[int, int]] = []  # (native thread id, niceness) of each read
    loader = ActivationLoader(store, "h", 64, seed=1, reader_nice=7, prefetch=2, threads=1)
    view_take = loader.view.take

    def take(idx, dtype=None):
        tid = threading.get_native_id()
        seen.append((tid, os.getpriority(os.PRIO_PROCESS, tid)))
        return view_take(idx, dtype)

    loader.view = type("Spy", (), {"take": staticmethod(take)})()
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    next(loader)
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:  # the next batch is read without being asked for
        time.sleep(0.01)
    loader.close()
    assert len(seen) >= 2
    assert all(tid != threading.get_native_id() and nice == min(19, base + 7) for tid, nice in seen)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    with pytest.raises(ValueError, match="reader_nice must be >= 0"):
        ActivationLoader(store, "h", 64, reader_nice=-1)
