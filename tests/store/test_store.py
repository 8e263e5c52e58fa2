"""Store writer, reader, verification and resume."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from saelab.store import (
    ActivationStore,
    StoreCorruptError,
    StoreMismatchError,
    StoreWriter,
    store_info,
    verify_store,
)

D = 8
META = {"model": "m", "corpus": "c"}


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    acts = {"a": rng.standard_normal((n, D)).astype(np.float32) * 3, "b": rng.standard_normal((n, D)).astype(np.float32)}
    pos = np.arange(n) % 16
    return acts, np.arange(n) % 97, np.arange(n) // 16, pos


def _write(path, n: int, dtype="float32", shard=50, chunk=13, stop_after: int | None = None):
    acts, tok, doc, pos = _data(n)
    w = StoreWriter.create_or_resume(path, meta=META, hooks=["a", "b"], d_model=D, dtype=dtype, shard_tokens=shard)
    start = w.n_tokens_done
    for i in range(start, n, chunk):
        j = min(n, i + chunk)
        w.append({k: v[i:j] for k, v in acts.items()}, tok[i:j], doc[i:j], pos[i:j])
        if stop_after is not None and j >= stop_after:
            return w
    w.finalize()
    return w


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_roundtrip_and_stats(tmp_path, dtype) -> None:
    _write(tmp_path / "s", 230, dtype=dtype)
    s = ActivationStore(tmp_path / "s")
    acts, tok, doc, pos = _data(230)
    assert s.n_tokens == 230 and len(s.manifest["shards"]) == 5  # 4 full shards of 50 and one of 30
    idx = np.random.default_rng(1).permutation(230)[:77]
    got = s.activations("a")[idx].astype(np.float32)
    want = acts["a"][idx]
    if dtype == "bfloat16":
        want = want.astype(ml_dtypes.bfloat16).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(s.tokens[idx], tok[idx])
    np.testing.assert_array_equal(s.doc[idx], doc[idx])
    np.testing.assert_array_equal(s.pos[idx], pos[idx])
    st = s.stats("a")
    stored = np.asarray(s.activations("a")).astype(np.float64)
    keep = pos != 0
    np.testing.assert_allclose(st["mean"], stored[keep].mean(0), rtol=1e-10)
    np.testing.assert_allclose(st["var"], stored[keep].var(0), rtol=1e-8)
    np.testing.assert_allclose(st["mean_norm"], np.linalg.norm(stored, axis=1).mean(), rtol=1e-10)
    np.testing.assert_allclose(st["mean_sq_norm_no_bos"], (stored[keep] ** 2).sum(1).mean(), rtol=1e-10)
    assert st["max_abs"] == pytest.approx(np.abs(stored).max())
    assert sum(st["norm_histogram"]["counts"]) == 230
    assert not (s.train_indices() % 16 == 0).any() and len(s.train_indices(include_bos=True)) == 230
    assert store_info(tmp_path / "s")["n_shards"] == 5


def _files(path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


def test_resume_after_crash_is_byte_identical(tmp_path) -> None:
    _write(tmp_path / "ref", 230)
    _write(tmp_path / "crash", 230, stop_after=170)  # abandoned writer: 3 shards on disk, 20 tokens lost
    (tmp_path / "crash" / "shard_000003.safetensors.tmp").write_bytes(b"half a shard")
    (tmp_path / "crash" / "shard_000009.safetensors").write_bytes(b"unlisted")
    w = _write(tmp_path / "crash", 230)
    assert w.complete
    assert _files(tmp_path / "crash") == _files(tmp_path / "ref")


def test_mismatched_store_refused_unless_overwrite(tmp_path) -> None:
    _write(tmp_path / "s", 60)
    with pytest.raises(StoreMismatchError, match="meta.model: 'm' -> 'other'.*--overwrite"):
        StoreWriter.create_or_resume(tmp_path / "s", meta={**META, "model": "other"}, hooks=["a", "b"], d_model=D,
                                     dtype="float32", shard_tokens=50)
    w = StoreWriter.create_or_resume(tmp_path / "s", meta={**META, "model": "other"}, hooks=["a", "b"], d_model=D,
                                     dtype="float32", shard_tokens=50, overwrite=True)
    assert w.n_tokens_done == 0 and not list((tmp_path / "s").glob("shard_*"))


def test_append_validates_shapes(tmp_path) -> None:
    w = StoreWriter.create_or_resume(tmp_path / "s", meta=META, hooks=["a"], d_model=D, dtype="float32")
    with pytest.raises(ValueError, match=r"shape \(3, 4\), expected \(3, 8\)"):
        w.append({"a": np.zeros((3, 4))}, np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="hooks"):
        w.append({"b": np.zeros((3, D))}, np.zeros(3), np.zeros(3), np.zeros(3))


def test_truncated_and_bitflipped_shards_are_named_and_refused(tmp_path) -> None:
    _write(tmp_path / "s", 230)
    s1 = tmp_path / "s" / "shard_000001.safetensors"
    s3 = tmp_path / "s" / "shard_000003.safetensors"
    s1.write_bytes(s1.read_bytes()[:-40])
    raw = bytearray(s3.read_bytes())
    raw[-7] ^= 0x10
    s3.write_bytes(bytes(raw))
    problems = {p.file: p.problem for p in verify_store(tmp_path / "s")}
    assert set(problems) == {"shard_000001.safetensors", "shard_000003.safetensors"}
    assert "size" in problems["shard_000001.safetensors"] and "checksum" in problems["shard_000003.safetensors"]
    with pytest.raises(StoreCorruptError, match="shard_000001"):
        ActivationStore(tmp_path / "s")
    s1.unlink()
    with pytest.raises(StoreCorruptError, match="shard_000001.safetensors: missing"):
        ActivationStore(tmp_path / "s")


def test_bitflip_refused_with_full_verification(tmp_path) -> None:
    _write(tmp_path / "s", 120)
    f = tmp_path / "s" / "shard_000000.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 1
    f.write_bytes(bytes(raw))
    ActivationStore(tmp_path / "s")  # sizes are right: the fast check passes
    with pytest.raises(StoreCorruptError, match="shard_000000.safetensors: checksum"):
        ActivationStore(tmp_path / "s", verify="full")


def test_not_a_store(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not an activation store"):
        ActivationStore(tmp_path)
