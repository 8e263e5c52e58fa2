"""ActivationStore: memory-mapped random access to any token of a store by global index."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from saelab.store.format import StoreCorruptError, StoreError, memmap_tensors, read_manifest
from saelab.store.verify import shard_problems


def store_info(path: str | Path) -> dict[str, Any]:
    """What `saelab store info` prints: size, layout and provenance of a store, from its manifest alone."""
    m = read_manifest(Path(path))
    return {
        "path": str(path),
        "complete": m["complete"],
        "n_tokens": m["n_tokens"],
        "hooks": m["hooks"],
        "d_model": m["d_model"],
        "dtype": m["dtype"],
        "shard_tokens": m["shard_tokens"],
        "n_shards": len(m["shards"]),
        "bytes": sum(s["bytes"] for s in m["shards"]),
        "meta": m["meta"],
        "mean_norm_no_bos": {h: m["stats"].get(h, {}).get("mean_norm_no_bos") for h in m["hooks"]},
        "nonfinite_values": {h: m["stats"].get(h, {}).get("n_nonfinite", 0) for h in m["hooks"]},
        "skipped_windows": m.get("skipped_windows", 0),
    }


class ShardedView:
    """A lazy (n_tokens, ...) array over all shards of one tensor; indexing reads only the rows asked for."""

    def __init__(self, parts: list[np.ndarray], starts: np.ndarray) -> None:
        self.parts = parts
        self.starts = starts  # (n_shards + 1,) global index at which each shard begins, then the total
        self.shape = (int(starts[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        """`view[i]` one row, `view[idx_array]` or `view[a:b]` rows in the order asked."""
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        idx = np.asarray(idx)
        if idx.ndim == 0:
            return self.take(idx[None])[0]
        return self.take(idx)

    def take(self, idx: np.ndarray, dtype: Any = None) -> np.ndarray:
        """Rows `idx` (any order, repeats allowed) as (len(idx), ...) in `dtype` (default: the stored one).

        Indices are sorted so each shard is read with one vectorised gather in file order, then the rows are
        put back in the order asked; the cast to `dtype` happens in that same copy.
        """
        idx = np.asarray(idx)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise IndexError(f"token indices must be a 1-D integer array, got shape {idx.shape} dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"token index out of range [0, {len(self)}): min {idx.min()}, max {idx.max()}")
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        bounds = np.searchsorted(sorted_idx, self.starts)  # sorted_idx[bounds[s]:bounds[s+1]] lie in shard s
        out = np.empty((len(idx), *self.shape[1:]), self.dtype if dtype is None else dtype)
        for s in np.flatnonzero(np.diff(bounds)):
            lo, hi = bounds[s], bounds[s + 1]
            out[order[lo:hi]] = self.parts[s][sorted_idx[lo:hi] - self.starts[s]]
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """Everything, read into memory: meant for the small index fields, not for activations."""
        a = np.concatenate(self.parts)
        return a if dtype is None else a.astype(dtype)


class ActivationStore:
    """Read side of a store. `verify="size"` checks shard sizes at open (fast); "full" checks checksums."""

    def __init__(self, path: str | Path, verify: Literal["none", "size", "full"] = "size") -> None:
        if verify not in ("none", "size", "full"):
            raise ValueError(f"verify must be 'none', 'size' or 'full', got {verify!r}")
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        if verify != "none":
            problems = shard_problems(self.path, self.manifest, checksums=verify == "full")
            if problems:
                listing = "; ".join(f"{p.file}: {p.problem}" for p in problems)
                raise StoreCorruptError(
                    f"store {self.path} has corrupt or missing shards ({listing}); re-harvest it with "
                    "--overwrite (`saelab store verify` lists every bad shard)"
                )
        if not self.manifest["shards"]:
            raise StoreError(f"store {self.path} holds no complete shard yet; let the harvest write one")
        self._shards = [memmap_tensors(self.path / s["file"]) for s in self.manifest["shards"]]
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
        """Storage dtype name: "float32", "bfloat16" or "float16"."""
        return self.manifest["dtype"]

    @property
    def complete(self) -> bool:
        """False while a harvest is still writing (or was killed before finishing)."""
        return self.manifest["complete"]

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest["meta"]

    def stats(self, hook: str) -> dict[str, Any]:
        """Normalisation statistics of `hook` (see `saelab.store.stats.summarize` for the keys)."""
        self._check_hook(hook)
        return self.manifest["stats"][hook]

    def activations(self, hook: str) -> ShardedView:
        """(n_tokens, d_model) lazy view of `hook`'s activations in the storage dtype."""
        self._check_hook(hook)
        return self._view(hook)

    @property
    def tokens(self) -> ShardedView:
        """(n_tokens,) int32 token ids."""
        return self._view("tokens")

    @property
    def doc(self) -> ShardedView:
        """(n_tokens,) int64 document index in the corpus."""
        return self._view("doc")

    @property
    def pos(self) -> ShardedView:
        """(n_tokens,) int32 position in the packed context window; 0 is the BOS."""
        return self._view("pos")

    def train_indices(self, include_bos: bool = False) -> np.ndarray:
        """Global token indices usable for training: every token but the BOS positions unless asked."""
        if include_bos:
            return np.arange(self.n_tokens, dtype=np.int64)
        starts = self._starts[:-1]
        return np.concatenate(
            [np.flatnonzero(s["pos"] != 0) + start for s, start in zip(self._shards, starts, strict=True)]
        ).astype(np.int64)

    def _view(self, name: str) -> ShardedView:
        return ShardedView([s[name] for s in self._shards], self._starts)

    def _check_hook(self, hook: str) -> None:
        if hook not in self.hooks:
            raise ValueError(f"hook {hook!r} is not in store {self.path}; it holds {self.hooks}")
