"""Store faults: a truncated shard, a bit-flipped shard and a full disk while writing. Each is named with its
fix by `saelab store verify` (exit 1) or the writer, training refuses the damage, and a rerun completes."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from saelab import train
from saelab.runtime.finite import NonFiniteError
from saelab.store import ActivationStore, StoreCorruptError, StoreError, StoreWriter, verify_store
from saelab.store import writer as writer_module
from tests.inspect.inspect_helpers import HOOK, write_store

from .conftest import cli, files, train_cfg


def test_truncated_shard_is_named_refused_by_training_and_a_reharvest_completes(store, tmp_path) -> None:
    shard = store / "shard_000002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    p = cli("store", "verify", str(store))
    assert p.returncode == 1 and f"{store}/shard_000002.safetensors: truncated or grown" in p.stdout
    cfg = train_cfg(store, tmp_path / "runs", "t")
    with pytest.raises(StoreCorruptError, match=r"shard_000002.safetensors: truncated.*re-harvest it with --overwrite"):
        train.run(cfg)
    with pytest.raises(StoreCorruptError, match=r"cannot resume .*shard_000002.*pass --overwrite"):
        StoreWriter.create_or_resume(store, **_layout(store))
    write_store(store.parent / "fresh")  # the fix: harvest again
    assert train.run(train_cfg(store.parent / "fresh", tmp_path / "runs", "t2")).steps == 20


def test_bit_flipped_shard_is_named_by_checksum_and_row_and_stops_training(store, tmp_path) -> None:
    m = json.loads((store / "manifest.json").read_text())
    view = ActivationStore(store).activations(HOOK)
    row = next(r for r in range(200, 400) if 1.0 <= abs(float(view[r][0])) < 2.0 and r % 16)
    shard, start = _shard_of(m, row)
    f = store / shard
    raw = bytearray(f.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    at = 8 + n + json.loads(raw[8 : 8 + n])[HOOK]["data_offsets"][0] + (row - start) * m["d_model"] * 4
    raw[at + 3] ^= 0x40  # float32 bit 30: exponent 0x7F -> 0xFF, a value in [1, 2) becomes NaN or Inf
    f.write_bytes(bytes(raw))

    p = cli("store", "verify", "--deep", str(store))
    assert p.returncode == 1
    assert f"{shard}: checksum mismatch" in p.stdout and "re-harvest the store with --overwrite" in p.stdout
    assert verify_store(store) == [(shard, "checksum mismatch (corrupt data)")]
    deep = verify_store(store, deep=True)
    assert [q.file for q in deep] == [shard, shard]
    assert f"first row {row - start} (store row {row}: " in deep[1].problem
    with pytest.raises(NonFiniteError, match=rf"NaN/Inf activations at rows {row} "):
        train.run(train_cfg(store, tmp_path, "flip"))
    assert not (tmp_path / "flip" / "sae").exists()


def test_full_disk_while_writing_a_shard_names_the_fix_and_a_rerun_is_byte_identical(tmp_path, monkeypatch) -> None:
    ref = _write(tmp_path / "ref")
    real, calls = writer_module.write_safetensors, []

    def full_at_third(path, tensors):
        calls.append(path)
        if len(calls) == 3:
            path.with_name(path.name + ".tmp").write_bytes(b"\0" * 100)  # half written, then ENOSPC
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, tensors)

    monkeypatch.setattr(writer_module, "write_safetensors", full_at_third)
    with pytest.raises(StoreError, match=r"writing shard_000002.safetensors .*No space left on device.*free space"):
        _write(tmp_path / "s")
    assert not (tmp_path / "s" / "shard_000002.safetensors.tmp").exists()  # the space is given back
    assert ActivationStore(tmp_path / "s").n_tokens == 2 * 50  # the complete shards are kept
    monkeypatch.setattr(writer_module, "write_safetensors", real)
    _write(tmp_path / "s")
    assert files(tmp_path / "s") == files(ref)


def _write(path, n: int = 230):
    """230 tokens in shards of 50, appended 20 at a time after what is on disk (resuming)."""
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((n, 4)).astype(np.float32)
    w = StoreWriter.create_or_resume(path, meta={}, hooks=["h"], d_model=4, dtype="float32", shard_tokens=50)
    for a in range(w.n_tokens_done, n, 20):
        b = min(a + 20, n)
        w.append({"h": acts[a:b]}, np.arange(a, b), np.arange(a, b) // 10, np.arange(a, b) % 10)
    w.finalize()
    return path


def _layout(store) -> dict:
    m = json.loads((store / "manifest.json").read_text())
    return {k: m[k] for k in ("meta", "hooks", "d_model", "dtype", "shard_tokens")}


def _shard_of(m: dict, row: int) -> tuple[str, int]:
    start = 0
    for s in m["shards"]:
        if row < start + s["n_tokens"]:
            return s["file"], start
        start += s["n_tokens"]
    raise IndexError(row)
