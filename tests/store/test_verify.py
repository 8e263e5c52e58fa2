"""Damaged stores: verify_store names every bad shard, the reader and a resume refuse them."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.store import ActivationStore, StoreCorruptError, StoreWriter, verify_store

D = 4


def _write(path, n: int = 230) -> None:
    rng = np.random.default_rng(0)
    w = StoreWriter.create_or_resume(path, meta={}, hooks=["h"], d_model=D, dtype="float32", shard_tokens=50)
    w.append({"h": rng.standard_normal((n, D)).astype(np.float32)}, np.arange(n), np.arange(n) // 10, np.arange(n) % 10)
    w.finalize()


def _flip(f, at: int) -> None:
    raw = bytearray(f.read_bytes())
    raw[at] ^= 0x10
    f.write_bytes(bytes(raw))


def test_sound_store_has_no_problems(tmp_path) -> None:
    _write(tmp_path / "s")
    assert verify_store(tmp_path / "s") == []
    ActivationStore(tmp_path / "s", verify="full")


def test_truncated_bitflipped_and_missing_shards_are_named(tmp_path) -> None:
    _write(tmp_path / "s")
    s1, s3, s4 = (tmp_path / "s" / f"shard_00000{i}.safetensors" for i in (1, 3, 4))
    s1.write_bytes(s1.read_bytes()[:-40])
    _flip(s3, -7)
    s4.unlink()
    problems = {p.file: p.problem for p in verify_store(tmp_path / "s")}
    assert set(problems) == {s1.name, s3.name, s4.name}
    assert "truncated" in problems[s1.name] and "checksum" in problems[s3.name]
    assert problems[s4.name] == "missing"


def test_reader_refuses_truncated_shard_with_size_check(tmp_path) -> None:
    _write(tmp_path / "s")
    f = tmp_path / "s" / "shard_000001.safetensors"
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(StoreCorruptError, match=r"shard_000001.safetensors: truncated.*--overwrite"):
        ActivationStore(tmp_path / "s")


def test_bitflip_needs_full_verification(tmp_path) -> None:
    _write(tmp_path / "s")
    _flip(tmp_path / "s" / "shard_000000.safetensors", -3)
    ActivationStore(tmp_path / "s")  # sizes are right: the fast check passes
    with pytest.raises(StoreCorruptError, match="shard_000000.safetensors: checksum mismatch"):
        ActivationStore(tmp_path / "s", verify="full")


def test_resume_refuses_a_damaged_store(tmp_path) -> None:
    _write(tmp_path / "s")
    (tmp_path / "s" / "shard_000002.safetensors").unlink()
    with pytest.raises(StoreCorruptError, match=r"cannot resume .*shard_000002\S*: missing.*--overwrite"):
        StoreWriter.create_or_resume(tmp_path / "s", meta={}, hooks=["h"], d_model=D, dtype="float32", shard_tokens=50)


def test_garbled_manifest_is_named(tmp_path) -> None:
    _write(tmp_path / "s")
    (tmp_path / "s" / "manifest.json").write_text("{not json")
    with pytest.raises(StoreCorruptError, match="manifest.json is not valid JSON"):
        ActivationStore(tmp_path / "s")
    w = StoreWriter.create_or_resume(
        tmp_path / "s", meta={}, hooks=["h"], d_model=D, dtype="float32", shard_tokens=50, overwrite=True
    )
    assert w.n_tokens_done == 0
