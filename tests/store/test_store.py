"""Store writer and reader: round trip, statistics, resume, refusal of mismatched stores, input checks."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file

from saelab.store import (
    ActivationStore,
    NotAStoreError,
    StoreError,
    StoreMismatchError,
    StoreWriter,
    store_info,
)
from saelab.store.stats import NORM_BINS

D = 8
META = {"model": "m", "corpus": "c"}
DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


def _data(n: int, seed: int = 0):
    """Hook "a" has BOS rows 50x larger, as real residual streams do, so BOS exclusion is visible."""
    rng = np.random.default_rng(seed)
    pos = np.arange(n) % 16
    a = rng.standard_normal((n, D)).astype(np.float32) * 3 + 1
    a[pos == 0] *= 50
    acts = {"a": a, "b": rng.standard_normal((n, D)).astype(np.float32)}
    return acts, np.arange(n) % 97, np.arange(n) // 16, pos


def _open(path, dtype="float32", shard=50, meta=META, overwrite=False) -> StoreWriter:
    return StoreWriter.create_or_resume(
        path, meta=meta, hooks=["a", "b"], d_model=D, dtype=dtype, shard_tokens=shard, overwrite=overwrite
    )


def _write(path, n: int, dtype="float32", shard=50, chunk=13, stop_after: int | None = None) -> StoreWriter:
    """Append n tokens in chunks, resuming after what is on disk; stop_after abandons the writer (a crash)."""
    acts, tok, doc, pos = _data(n)
    w = _open(path, dtype, shard)
    for i in range(w.n_tokens_done, n, chunk):
        j = min(n, i + chunk)
        w.append({k: v[i:j] for k, v in acts.items()}, tok[i:j], doc[i:j], pos[i:j])
        if stop_after is not None and j >= stop_after:
            return w
    w.finalize()
    return w


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_roundtrip(tmp_path, dtype) -> None:
    _write(tmp_path / "s", 230, dtype=dtype)
    s = ActivationStore(tmp_path / "s")
    acts, tok, doc, pos = _data(230)
    assert s.n_tokens == 230 and s.complete and s.dtype == dtype and s.hooks == ["a", "b"] and s.d_model == D
    assert [sh["n_tokens"] for sh in s.manifest["shards"]] == [50, 50, 50, 50, 30]
    idx = np.random.default_rng(1).permutation(230)[:77]
    for h in ("a", "b"):
        want = acts[h][idx].astype(DTYPES[dtype])
        got = s.activations(h)[idx]
        assert got.dtype == want.dtype and got.shape == (77, D)
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(s.tokens[idx], tok[idx])
    np.testing.assert_array_equal(s.doc[idx], doc[idx])
    np.testing.assert_array_equal(s.pos[idx], pos[idx])
    assert s.tokens[idx].dtype == np.int32 and s.doc[idx].dtype == np.int64 and s.pos[idx].dtype == np.int32


def test_shards_are_plain_safetensors(tmp_path) -> None:
    _write(tmp_path / "s", 120, dtype="bfloat16")
    t = load_file(str(tmp_path / "s" / "shard_000001.safetensors"))
    acts, tok, _, _ = _data(120)
    np.testing.assert_array_equal(t["a"], acts["a"][50:100].astype(ml_dtypes.bfloat16))
    np.testing.assert_array_equal(t["tokens"], tok[50:100])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_stats_match_numpy(tmp_path, dtype) -> None:
    _write(tmp_path / "s", 230, dtype=dtype)
    s = ActivationStore(tmp_path / "s")
    _, _, _, pos = _data(230)
    keep = pos != 0
    for h in ("a", "b"):
        st = s.stats(h)
        x = np.asarray(s.activations(h)).astype(np.float64)  # (230, D) as stored
        norms = np.linalg.norm(x, axis=1)
        assert st["n_tokens"] == 230 and st["n_tokens_no_bos"] == keep.sum()
        np.testing.assert_allclose(st["mean"], x.mean(0), rtol=1e-10)
        np.testing.assert_allclose(st["var"], x.var(0), rtol=1e-8)
        np.testing.assert_allclose(st["mean_no_bos"], x[keep].mean(0), rtol=1e-10)
        np.testing.assert_allclose(st["var_no_bos"], x[keep].var(0), rtol=1e-8)
        np.testing.assert_allclose(st["mean_norm"], norms.mean(), rtol=1e-12)
        np.testing.assert_allclose(st["mean_sq_norm"], (norms**2).mean(), rtol=1e-12)
        np.testing.assert_allclose(st["mean_norm_no_bos"], norms[keep].mean(), rtol=1e-12)
        np.testing.assert_allclose(st["mean_sq_norm_no_bos"], (norms[keep] ** 2).mean(), rtol=1e-12)
        assert st["max_abs"] == np.abs(x).max() and st["max_abs_no_bos"] == np.abs(x[keep]).max()
        want_hist = np.histogram(np.clip(norms, NORM_BINS[0], NORM_BINS[-1]), NORM_BINS)[0]
        assert st["norm_histogram"]["counts"] == want_hist.tolist()
        assert st["norm_histogram"]["edges"] == NORM_BINS.tolist()
    assert s.stats("a")["mean_norm"] > 3 * s.stats("a")["mean_norm_no_bos"]  # the big BOS rows


def test_views_index_like_arrays(tmp_path) -> None:
    _write(tmp_path / "s", 230)
    s = ActivationStore(tmp_path / "s")
    a, _, _, pos = _data(230)
    v = s.activations("a")
    assert v.shape == (230, D) and len(v) == 230
    np.testing.assert_array_equal(v[7], a["a"][7])
    np.testing.assert_array_equal(v[45:120], a["a"][45:120])
    idx = np.array([229, 3, 3, 180, 0, 51])  # unsorted, repeated, across shards
    np.testing.assert_array_equal(v[idx], a["a"][idx])
    assert v.take(idx, np.float64).dtype == np.float64
    assert v[np.array([], np.int64)].shape == (0, D)
    with pytest.raises(IndexError, match="out of range"):
        v[np.array([230])]
    np.testing.assert_array_equal(s.train_indices(), np.flatnonzero(pos != 0))
    np.testing.assert_array_equal(s.train_indices(include_bos=True), np.arange(230))
    with pytest.raises(ValueError, match="hook 'c' is not in store"):
        s.activations("c")


def test_store_info(tmp_path) -> None:
    _write(tmp_path / "s", 230)
    info = store_info(tmp_path / "s")
    assert info["n_tokens"] == 230 and info["n_shards"] == 5 and info["hooks"] == ["a", "b"]
    assert info["meta"] == META and info["complete"] and info["dtype"] == "float32" and info["d_model"] == D
    assert info["bytes"] == sum(f.stat().st_size for f in (tmp_path / "s").glob("shard_*"))
    json.dumps(info)


def _files(path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


def test_resume_after_crash_is_byte_identical(tmp_path) -> None:
    _write(tmp_path / "ref", 230)
    w = _write(tmp_path / "crash", 230, stop_after=170)  # abandoned: 3 shards on disk, 20 tokens lost
    assert w.n_tokens_done == 150 and not w.complete
    (tmp_path / "crash" / "shard_000003.safetensors.tmp").write_bytes(b"half a shard")
    (tmp_path / "crash" / "manifest.json.tmp").write_bytes(b"{half")
    (tmp_path / "crash" / "shard_000009.safetensors").write_bytes(b"unlisted")
    assert _open(tmp_path / "crash").n_tokens_done == 150
    assert sorted(f.name for f in (tmp_path / "crash").iterdir()) == [
        "manifest.json",
        "shard_000000.safetensors",
        "shard_000001.safetensors",
        "shard_000002.safetensors",
    ]
    w = _write(tmp_path / "crash", 230)
    assert w.complete
    assert _files(tmp_path / "crash") == _files(tmp_path / "ref")
    done = _open(tmp_path / "crash")  # a finished store reopens as complete, with nothing to do
    assert done.complete and done.n_tokens_done == 230
    with pytest.raises(StoreError, match="finalized"):
        done.append(*_data(1))


def test_mismatched_store_refused_unless_overwrite(tmp_path) -> None:
    _write(tmp_path / "s", 60)
    (tmp_path / "s" / "notes.txt").write_text("mine")
    with pytest.raises(StoreMismatchError, match=r"meta.model: 'm' -> 'other'.*--overwrite"):
        _open(tmp_path / "s", meta={**META, "model": "other"})
    with pytest.raises(StoreMismatchError, match=r"shard_tokens: 50 -> 64"):
        _open(tmp_path / "s", shard=64)
    with pytest.raises(StoreMismatchError, match=r"dtype: 'float32' -> 'bfloat16'"):
        _open(tmp_path / "s", dtype="bfloat16")
    w = _open(tmp_path / "s", meta={**META, "model": "other"}, overwrite=True)
    assert w.n_tokens_done == 0 and not list((tmp_path / "s").glob("shard_*"))
    assert (tmp_path / "s" / "notes.txt").read_text() == "mine"  # overwrite deletes only the store's files


def test_non_store_directory_is_never_wiped(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "paper.tex").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(StoreMismatchError, match="not an activation store"):
            _open(tmp_path / "d", overwrite=overwrite)
    assert (tmp_path / "d" / "paper.tex").exists()


def test_append_validates_inputs(tmp_path) -> None:
    w = StoreWriter.create_or_resume(tmp_path / "s", meta=META, hooks=["a"], d_model=D, dtype="float32")
    z3 = np.zeros(3, np.int64)
    with pytest.raises(ValueError, match=r"shape \(3, 4\), expected \(3, 8\)"):
        w.append({"a": np.zeros((3, 4), np.float32)}, z3, z3, z3)
    with pytest.raises(ValueError, match="hooks"):
        w.append({"b": np.zeros((3, D), np.float32)}, z3, z3, z3)
    with pytest.raises(ValueError, match="dtype int64; expected a float"):
        w.append({"a": np.zeros((3, D), np.int64)}, z3, z3, z3)
    with pytest.raises(ValueError, match="tokens must be a 1-D integer array"):
        w.append({"a": np.zeros((3, D), np.float32)}, np.zeros(3), z3, z3)
    with pytest.raises(ValueError, match=r"pos must be a 1-D integer array of 3 entries"):
        w.append({"a": np.zeros((3, D), np.float32)}, z3, z3, z3[:2])
    with pytest.raises(ValueError, match="store dtype 'int8'"):
        StoreWriter.create_or_resume(tmp_path / "t", meta=META, hooks=["a"], d_model=D, dtype="int8")
    with pytest.raises(ValueError, match="JSON"):
        StoreWriter.create_or_resume(tmp_path / "t", meta={"x": object()}, hooks=["a"], d_model=D, dtype="float32")


def test_not_a_store(tmp_path) -> None:
    with pytest.raises(NotAStoreError, match=f"not an activation store: {tmp_path} has no manifest.json"):
        ActivationStore(tmp_path)
    assert issubclass(NotAStoreError, FileNotFoundError) and issubclass(NotAStoreError, StoreError)
