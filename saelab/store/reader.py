"""ActivationStore: memory-mapped random access to any token of a store by global index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from saelab.store.format import MANIFEST, StoreCorruptError, StoreError, memmap_tensors, sha256


class Problem(NamedTuple):
    file: str
    problem: str


def verify_store(path: str | Path) -> list[Problem]:
    """Every missing, truncated or checksum-mismatched shard, named; empty when the store is sound."""
    path = Path(path)
    return _shard_problems(path, _read_manifest(path), checksums=True)


def _shard_problems(path: Path, manifest: dict[str, Any], checksums: bool) -> list[Problem]:
    problems = []
    for s in manifest["shards"]:
        f = path / s["file"]
        if not f.exists():
            problems.append(Problem(s["file"], "missing"))
        elif f.stat().st_size != s["bytes"]:
            problems.append(Problem(s["file"], f"size {f.stat().st_size} bytes, manifest says {s['bytes']}"))
        elif checksums and sha256(f) != s["sha256"]:
            problems.append(Problem(s["file"], "checksum mismatch (corrupt data)"))
    return problems


def store_info(path: str | Path) -> dict[str, Any]:
    """What `saelab store info` prints."""
    m = _read_manifest(Path(path))
    return {
        "path": str(path), "complete": m["complete"], "n_tokens": m["n_tokens"], "hooks": m["hooks"],
        "d_model": m["d_model"], "dtype": m["dtype"], "shard_tokens": m["shard_tokens"],
        "n_shards": len(m["shards"]), "bytes": sum(s["bytes"] for s in m["shards"]), "meta": m["meta"],
        "mean_norm_no_bos": {h: m["stats"].get(h, {}).get("mean_norm_no_bos") for h in m["hooks"]},
    }


class _View:
    """Lazy (n_tokens, ...) array over all shards: `view[idx]` gathers, one vectorised read per shard."""

    def __init__(self, parts: list[np.ndarray], starts: np.ndarray) -> None:
        self.parts = parts
        self.starts = starts  # (n_shards + 1,) global index where each shard begins
        self.shape = (int(starts[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        idx = np.asarray(idx)
        scalar = idx.ndim == 0
        idx = np.atleast_1d(idx).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"token index out of range [0, {len(self)})")
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        shard = np.searchsorted(self.starts, sorted_idx, side="right") - 1
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        bounds = np.searchsorted(shard, np.arange(len(self.parts) + 1))
        for s in range(len(self.parts)):
            lo, hi = bounds[s], bounds[s + 1]
            if hi > lo:
                out[order[lo:hi]] = self.parts[s][sorted_idx[lo:hi] - self.starts[s]]
        return out[0] if scalar else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = np.concatenate([np.asarray(p) for p in self.parts])
        return a if dtype is None else a.astype(dtype)


class ActivationStore:
    """Read side of a store. `verify="size"` checks shard sizes at open (fast); "full" checks checksums."""

    def __init__(self, path: str | Path, verify: Literal["none", "size", "full"] = "size") -> None:
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        if verify != "none":
            problems = _shard_problems(self.path, self.manifest, checksums=verify == "full")
            if problems:
                listing = "; ".join(f"{p.file}: {p.problem}" for p in problems)
                raise StoreCorruptError(
                    f"store {self.path} has corrupt or missing shards ({listing}); delete them and their "
                    "manifest entries by re-running the harvest with --overwrite"
                )
        shards = [memmap_tensors(self.path / s["file"]) for s in self.manifest["shards"]]
        if not shards:
            raise StoreError(f"store {self.path} holds no complete shard yet")
        self._shards = shards
        self._starts = np.concatenate([[0], np.cumsum([s["n_tokens"] for s in self.manifest["shards"]])])

    @property
    def hooks(self) -> list[str]:
        return self.manifest["hooks"]

    @property
    def d_model(self) -> int:
        return self.manifest["d_model"]

    @property
    def n_tokens(self) -> int:
        return self.manifest["n_tokens"]

    @property
    def dtype(self) -> str:
        return self.manifest["dtype"]

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest["meta"]

    def stats(self, hook: str) -> dict[str, Any]:
        self._check_hook(hook)
        return self.manifest["stats"][hook]

    def activations(self, hook: str) -> _View:
        self._check_hook(hook)
        return _View([s[hook] for s in self._shards], self._starts)

    @property
    def tokens(self) -> _View:
        return _View([s["tokens"] for s in self._shards], self._starts)

    @property
    def doc(self) -> _View:
        return _View([s["doc"] for s in self._shards], self._starts)

    @property
    def pos(self) -> _View:
        return _View([s["pos"] for s in self._shards], self._starts)

    def train_indices(self, include_bos: bool = False) -> np.ndarray:
        """Global token indices usable for training: every token but the BOS positions unless asked."""
        if include_bos:
            return np.arange(self.n_tokens, dtype=np.int64)
        return np.flatnonzero(np.asarray(self.pos) != 0).astype(np.int64)

    def _check_hook(self, hook: str) -> None:
        if hook not in self.hooks:
            raise ValueError(f"hook {hook!r} is not in store {self.path}; it holds {self.hooks}")


def _read_manifest(path: Path) -> dict[str, Any]:
    f = path / MANIFEST
    if not f.exists():
        raise FileNotFoundError(f"not an activation store: {path} has no {MANIFEST} (make one with saelab harvest)")
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise StoreCorruptError(f"{f} is not valid JSON ({e}); the store cannot be read") from e
