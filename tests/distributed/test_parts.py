"""The multi-process store protocol without processes: parts written (and crashed, and resumed) one process at a
time, merged by process 0, give the bytes of a 1-process store; refusals name the process count to use."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.harvest.harvest import share
from saelab.store import ActivationStore, StoreError, StoreMismatchError, StoreWriter
from saelab.store.writer import merge_parts, part_manifest_name

D, SHARD, N = 4, 32, 200  # 200 tokens in shards of 32: 7 shards, the last one short
LAYOUT = {"meta": {"model": "m"}, "hooks": ["h"], "d_model": D, "dtype": "float32", "shard_tokens": SHARD}


def _data(lo: int, hi: int):
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((N, D)).astype(np.float32)
    idx = np.arange(N)
    return {"h": acts[lo:hi]}, idx[lo:hi] % 50, idx[lo:hi] // 16, idx[lo:hi] % 16


def _files(d) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(d.iterdir())}


def _part(path, i: int, n: int, crash_after: int | None = None) -> StoreWriter:
    """Process i of n: write its shards' tokens in chunks of 12, resuming what its part manifest lists."""
    part = share(N, SHARD, i, n)  # one "window" per token here
    w = StoreWriter.create_or_resume_part(path, part)
    lo, hi = part.shards.start * SHARD, min(part.shards.stop * SHARD, N)
    for a in range(lo + w.n_tokens_done, hi, 12):
        w.append(*_data(a, min(a + 12, hi)))
        if crash_after is not None and a + 12 - lo >= crash_after:
            return w  # abandoned mid-shard, as a killed process leaves it
    w.finalize()
    return w


def test_parts_with_a_crash_merge_to_the_one_process_store(tmp_path) -> None:
    one = tmp_path / "one"
    w = StoreWriter.create_or_resume(one, **LAYOUT)
    for a in range(0, N, 12):
        w.append(*_data(a, min(a + 12, N)))
    w.finalize()

    multi = tmp_path / "multi"
    for act in (False, True):
        assert StoreWriter.open_shared(multi, **LAYOUT, processes=3, act=act) is False
    _part(multi, 0, 3)
    _part(multi, 2, 3)
    _part(multi, 1, 3, crash_after=40)  # one full shard on disk, a partial second in memory only
    with pytest.raises(StoreError, match="no complete shard"):  # readers see no half-made store meanwhile
        ActivationStore(multi)
    with pytest.raises(StoreError, match=r"processes \[1\] have not finished"):
        merge_parts(multi, 3)
    # another process count or a 1-process run must not touch it
    with pytest.raises(StoreMismatchError, match="started by 3 processes"):
        StoreWriter.open_shared(multi, **LAYOUT, processes=2, act=False)
    with pytest.raises(StoreMismatchError, match="started by 3 processes"):
        StoreWriter.create_or_resume(multi, **LAYOUT)
    # process 1 restarts alone: keeps its complete shard, redoes the rest; the others' shards are untouched
    before = _files(multi)
    w1 = _part(multi, 1, 3)
    assert w1.manifest["shards"][0]["sha256"] and len(w1.manifest["shards"]) == 2
    after = _files(multi)
    for name in (
        "shard_000000.safetensors",
        "shard_000001.safetensors",
        "shard_000004.safetensors",
        "shard_000006.safetensors",
    ):
        assert after[name] == before[name]
    assert StoreWriter.open_shared(multi, **LAYOUT, processes=3, act=False) is False  # not merged yet
    merge_parts(multi, 3)
    assert _files(multi) == _files(one)  # manifest (statistics included) and every shard
    assert not any((multi / part_manifest_name(i, 3)).exists() for i in range(3))
    assert StoreWriter.open_shared(multi, **LAYOUT, processes=3, act=False) is True  # complete: nothing to do


def test_share_splits_shards_contiguously_and_covers_everything() -> None:
    for n_windows, per_shard, procs in ((200, 32, 3), (5, 8, 4), (64, 8, 8), (1000, 7, 5)):
        parts = [share(n_windows, per_shard, i, procs) for i in range(procs)]
        covered = [s for p in parts for s in p.shards]
        assert covered == list(range(-(-n_windows // per_shard)))
        assert max(len(p.shards) for p in parts) - min(len(p.shards) for p in parts) <= 1


def test_overwrite_replaces_a_store_of_other_settings_and_its_parts(tmp_path) -> None:
    path = tmp_path / "s"
    StoreWriter.open_shared(path, **LAYOUT, processes=2)
    _part(path, 0, 2, crash_after=40)
    other = LAYOUT | {"meta": {"model": "other"}}
    with pytest.raises(StoreMismatchError, match="other settings"):
        StoreWriter.open_shared(path, **other, processes=2, act=False)
    StoreWriter.open_shared(path, **other, processes=2, overwrite=True)
    assert sorted(f.name for f in path.iterdir()) == ["manifest.json"]
