"""The on-disk format of an activation store: safetensors shards, the manifest, and shard statistics.

A shard is one safetensors file holding, per hook, activations (n, d_model) in the store dtype, plus the
token ids, document indices and window positions of its n tokens, plus `__stats__/...` float64 partial sums
from which the manifest's statistics are merged. Files are written whole to a temporary name, fsynced and
renamed, so a shard or manifest on disk is always complete. Written bytes depend only on the data (sorted
JSON, no timestamps), so a resumed store is byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX_FIELDS = {"tokens": np.int32, "doc": np.int64, "pos": np.int32}
STORE_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
              "I32": np.int32, "I64": np.int64}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}
NORM_BINS = np.logspace(-3, 5, 65)  # fixed histogram edges for activation norms


class StoreError(Exception):
    """Base of the store's errors."""


class StoreCorruptError(StoreError):
    """A shard is missing, truncated or fails its checksum."""


class StoreMismatchError(StoreError):
    """An existing store was made with other settings than the ones given."""


def shard_name(i: int) -> str:
    return f"shard_{i:06d}.safetensors"


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write a safetensors file atomically (tmp + fsync + rename), deterministic bytes."""
    header: dict[str, Any] = {}
    offset = 0
    names = sorted(tensors)
    for name in names:
        a = np.ascontiguousarray(tensors[name])
        header[name] = {"dtype": _ST_NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in names:
            f.write(np.ascontiguousarray(tensors[name]).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """(safetensors header, byte offset of the data section); raises StoreCorruptError on garbage."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                raise ValueError("header length implausible")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
        raise StoreCorruptError(f"shard {path} is unreadable ({e}); run `saelab store verify` and re-harvest") from e
    return header, 8 + n


def memmap_tensors(path: Path) -> dict[str, np.memmap]:
    """Memory-map every tensor of a safetensors file (no data is read until indexed)."""
    header, start = read_header(path)
    size = path.stat().st_size
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        if start + hi > size:
            raise StoreCorruptError(f"shard {path} is truncated ({size} bytes, tensor {name} ends at "
                                    f"{start + hi}); re-harvest to rewrite it")
        dtype = np.dtype(_ST_DTYPES[info["dtype"]])
        shape = tuple(info["shape"])
        out[name] = (np.memmap(path, dtype=dtype, mode="r", offset=start + lo, shape=shape)
                     if hi > lo else np.zeros(shape, dtype))
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def shard_stats(acts: np.ndarray, pos: np.ndarray) -> dict[str, np.ndarray]:
    """float64 partial sums of one hook's activations in one shard (merged by `merge_stats`)."""
    x = acts.astype(np.float64)
    keep = pos != 0  # BOS positions are excluded from the training statistics
    norms = np.linalg.norm(x, axis=1)
    xb = x[keep]
    return {
        "n": np.array([len(x), keep.sum()], np.float64),
        "norm_sums": np.array([norms.sum(), (norms**2).sum(), norms[keep].sum(), (norms[keep] ** 2).sum()]),
        "sum_x": xb.sum(0),
        "sum_x2": (xb**2).sum(0),
        "max_abs": np.array([np.abs(x).max(initial=0.0)]),
        "norm_hist": np.histogram(np.clip(norms, NORM_BINS[0], NORM_BINS[-1]), NORM_BINS)[0].astype(np.float64),
    }


def merge_stats(parts: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """The manifest's per-hook statistics from per-shard partial sums (order-deterministic)."""
    if not parts:
        return {}
    tot = {k: np.sum([p[k] for p in parts], axis=0) for k in parts[0] if k != "max_abs"}
    tot["max_abs"] = np.max([p["max_abs"] for p in parts])
    n_all, n_tok = tot["n"]
    s = tot["norm_sums"]
    mean = tot["sum_x"] / max(n_tok, 1)
    var = tot["sum_x2"] / max(n_tok, 1) - mean**2
    return {
        "n_tokens": int(n_all), "n_tokens_no_bos": int(n_tok),
        "mean_norm": s[0] / max(n_all, 1), "mean_sq_norm": s[1] / max(n_all, 1),
        "mean_norm_no_bos": s[2] / max(n_tok, 1), "mean_sq_norm_no_bos": s[3] / max(n_tok, 1),
        "mean": mean.tolist(), "var": np.maximum(var, 0).tolist(),  # per dimension, BOS excluded
        "max_abs": float(tot["max_abs"]),
        "norm_histogram": {"edges": NORM_BINS.tolist(), "counts": [int(c) for c in tot["norm_hist"]]},
    }
