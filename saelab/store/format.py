"""The on-disk format of an activation store: names, errors, safetensors shards and the manifest.

A store is a directory holding `manifest.json` and shards `shard_000000.safetensors`, ... Each shard is one
safetensors file with, per hook, activations (n, d_model) in the store dtype, the token ids, document
indices and window positions of its n tokens, and `__stats__/{hook}/{name}` float64 partial sums from which
the manifest's statistics are merged (see `saelab.store.stats`). Every file is written whole to a `.tmp`
name, fsynced and renamed, so a shard or manifest on disk is always complete. Written bytes depend only on
the data (sorted JSON, no timestamps), so a resumed store is byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np

from saelab.runtime.dtypes import FLOAT_DTYPES

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX_FIELDS = {"tokens": np.int32, "doc": np.int64, "pos": np.int32}
STORE_DTYPES = FLOAT_DTYPES  # storage dtype names a manifest may hold
STATS_PREFIX = "__stats__/"
_OWN_FILE = re.compile(r"(shard_\d{6,}\.safetensors|manifest\.json)(\.tmp)?")
_ST_DTYPES = {
    "F32": np.float32,
    "F64": np.float64,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I32": np.int32,
    "I64": np.int64,
}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


class StoreError(Exception):
    """Base of the store's errors."""


class NotAStoreError(StoreError, FileNotFoundError):
    """The directory has no manifest.json."""


class StoreCorruptError(StoreError):
    """A shard or the manifest is missing, truncated or fails its checksum."""


class StoreMismatchError(StoreError):
    """An existing store was made with other settings than the ones given."""


class Written(NamedTuple):
    bytes: int
    sha256: str


def shard_name(i: int) -> str:
    return f"shard_{i:06d}.safetensors"


def is_own_file(name: str) -> bool:
    """Whether a file name is one the store writes (so overwrite and resume may delete it)."""
    return _OWN_FILE.fullmatch(name) is not None


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> Written:
    """Write a safetensors file atomically (tmp + fsync + rename) with deterministic bytes.

    Tensors are laid out widest dtype first, so every tensor starts aligned to its item size.
    """
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    names = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    header: dict[str, Any] = {}
    offset = 0
    for name in names:
        a = arrays[name]
        if a.dtype not in _ST_NAMES:
            raise TypeError(f"tensor {name} has dtype {a.dtype}, which a store shard cannot hold")
        header[name] = {
            "dtype": _ST_NAMES[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + a.nbytes],
        }
        offset += a.nbytes
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
    h = hashlib.sha256()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        data = (arrays[n].reshape(-1).view(np.uint8) for n in names)
        for chunk in (struct.pack("<Q", len(raw)), raw, *data):
            f.write(chunk)
            h.update(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return Written(8 + len(raw) + offset, h.hexdigest())


def memmap_tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a read-only view of one memory map (nothing read until indexed).

    One mapping per file, not per tensor: a large store has thousands of shards, and Linux allows a process
    about 65k mappings.
    """
    header, start = _read_header(path)
    size = path.stat().st_size
    raw = np.memmap(path, dtype=np.uint8, mode="r").view(np.ndarray) if size else np.zeros(0, np.uint8)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        if start + hi > size:
            raise StoreCorruptError(
                f"shard {path} is truncated ({size} bytes, tensor {name} ends at "
                f"{start + hi}); run `saelab store verify` and re-harvest"
            )
        dtype = np.dtype(_ST_DTYPES[info["dtype"]])
        out[name] = raw[start + lo : start + hi].view(dtype).reshape(info["shape"])
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def is_store(path: str | Path) -> bool:
    """Whether `path` is an activation store directory (it holds a manifest.json)."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the store at `path`; NotAStoreError when there is none, StoreError when it is of
    another format version."""
    path = Path(path)
    f = path / MANIFEST
    if not f.is_file():
        raise NotAStoreError(f"not an activation store: {path} has no {MANIFEST} (make one with `saelab harvest`)")
    try:
        m = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreCorruptError(f"{f} is not valid JSON ({e}); re-harvest with --overwrite") from e
    if m.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{f} has format version {m.get('format_version')!r}; this saelab reads version "
            f"{FORMAT_VERSION}; re-harvest with --overwrite or use a matching saelab"
        )
    return m


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    """Make renames inside `path` durable (a crash right after os.replace could otherwise lose them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """(safetensors header, byte offset of the data section); StoreCorruptError on garbage."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                raise ValueError(f"header length {n} is implausible")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
        raise StoreCorruptError(f"shard {path} is unreadable ({e}); run `saelab store verify` and re-harvest") from e
    return header, 8 + n
