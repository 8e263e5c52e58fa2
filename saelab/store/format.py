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
from typing import Any, NamedTuple, NoReturn

import ml_dtypes
import numpy as np

from saelab.runtime.dtypes import FLOAT_DTYPES

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX_FIELDS = {"tokens": np.int32, "doc": np.int64, "pos": np.int32}
STORE_DTYPES = FLOAT_DTYPES  # storage dtype names a manifest may hold
STATS_PREFIX = "__stats__/"
IDENTITY = ("format_version", "meta", "hooks", "d_model", "dtype", "shard_tokens")  # what a resume must match
_OWN_FILE = re.compile(r"(shard_\d{6,}\.safetensors|manifest\.json|manifest\.part-\d{5}-of-\d{5}\.json)(\.tmp)?")
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
    """Whether a file name is one the store writes, part manifests of a multi-process harvest included (so
    overwrite and resume may delete it)."""
    return _OWN_FILE.fullmatch(name) is not None


def remove_own_files(path: Path, keep: set[str]) -> None:
    """Delete files the store writes (shards, manifests, their temporaries) other than `keep`."""
    if not path.is_dir():
        return
    for f in path.iterdir():
        if is_own_file(f.name) and f.name not in keep:
            f.unlink()


def refuse_foreign(path: Path) -> None:
    """StoreMismatchError unless `path` (which has no manifest) is absent or holds only a store's own files."""
    if not path.exists():
        return
    if not path.is_dir():
        raise StoreMismatchError(f"{path} is a file, not a store directory; choose another --out")
    foreign = sorted(f.name for f in path.iterdir() if not is_own_file(f.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise StoreMismatchError(
            f"{path} is not empty ({shown}) and is not an activation store; choose another --out "
            "(--overwrite never deletes other files)"
        )


def fresh_manifest(
    meta: dict[str, Any], hooks: list[str], d_model: int, dtype: str, shard_tokens: int
) -> dict[str, Any]:
    """The manifest of an empty store with these settings, exactly as it reads back from disk."""
    if dtype not in STORE_DTYPES:
        raise ValueError(f"store dtype {dtype!r} is not one of {sorted(STORE_DTYPES)}")
    if shard_tokens < 1 or d_model < 1:
        raise ValueError(f"shard_tokens ({shard_tokens}) and d_model ({d_model}) must be positive")
    if not hooks or len(set(hooks)) != len(hooks) or any("/" in h or h in INDEX_FIELDS for h in hooks):
        raise ValueError(f"hooks {hooks} must be distinct, non-empty, without '/' and none of {list(INDEX_FIELDS)}")
    fresh = {
        "format_version": FORMAT_VERSION,
        "meta": meta,
        "hooks": list(hooks),
        "d_model": int(d_model),
        "dtype": dtype,
        "shard_tokens": int(shard_tokens),
        "n_tokens": 0,
        "complete": False,
        "shards": [],
        "stats": {},
        "skipped_windows": 0,
    }
    try:
        return json.loads(json.dumps(fresh))  # as it will read back: tuples become lists, keys strings
    except TypeError as e:
        raise ValueError(f"store meta must be JSON-serialisable: {e}") from e


def identity_diff(path: Path, fresh: dict, overwrite: bool) -> tuple[dict | None, list[str]]:
    """(existing manifest or None when unreadable and `overwrite`, identity keys where it differs from `fresh`)."""
    try:
        old = read_manifest(path)
    except StoreError:
        if not overwrite:
            raise
        old = None
    return old, [k for k in IDENTITY if old is None or old.get(k) != fresh[k]]


def describe_diff(old: dict | None, fresh: dict, keys: list[str]) -> str:
    """The settings `keys` where a store on disk differs from `fresh`, in words: `meta.model: 'a' -> 'b'; ...`."""
    old = old or {}
    return "; ".join(_describe(k, old.get(k), fresh[k]) for k in keys)


def other_settings(old: dict | None, fresh: dict, keys: list[str]) -> str:
    """Why a store made with other settings cannot be resumed, for `refuse_replace`."""
    return f"holds a store made with other settings ({describe_diff(old, fresh, keys)})"


def refuse_replace(path: Path, problem: str) -> NoReturn:
    """Raise StoreMismatchError: the store at `path` cannot be resumed (`problem`), nor replaced unasked."""
    raise StoreMismatchError(
        f"{path} {problem}; pass --overwrite (overwrite=True) to replace it, or choose another --out"
    )


def write_fresh(path: Path, fresh: dict) -> None:
    """Make `path` an empty store of manifest `fresh`, deleting the store's own files there first (a replaced
    store, or the debris of a crash before the first manifest) and no other file."""
    remove_own_files(path, keep=set())
    path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path / MANIFEST, fresh)
    fsync_dir(path)


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


def _describe(key: str, old: Any, new: Any) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return ", ".join(f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
    return f"{key}: {old!r} -> {new!r}"


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
