"""StoreWriter: append activations, write fixed-size shards atomically, resume after a crash."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from saelab.store.format import (
    FORMAT_VERSION,
    INDEX_FIELDS,
    MANIFEST,
    STORE_DTYPES,
    StoreMismatchError,
    memmap_tensors,
    merge_stats,
    sha256,
    shard_name,
    shard_stats,
    write_json_atomic,
    write_safetensors,
)

_IDENTITY = ("format_version", "meta", "hooks", "d_model", "dtype", "shard_tokens")


class StoreWriter:
    """Buffers appended tokens and writes each full shard, then the manifest, atomically.

    The manifest only ever lists complete shards, so after a crash `create_or_resume` keeps those, deletes
    anything else, and reports `n_tokens_done`: the harvester skips that many tokens of its deterministic
    stream and carries on, giving the same bytes as an uninterrupted run.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._np_dtype = STORE_DTYPES[manifest["dtype"]]
        self._buf: dict[str, list[np.ndarray]] = {k: [] for k in [*manifest["hooks"], *INDEX_FIELDS]}
        self._buffered = 0
        self._stats = [self._read_stats(s["file"]) for s in manifest["shards"]]

    @classmethod
    def create_or_resume(
        cls, path: str | Path, *, meta: dict[str, Any], hooks: list[str], d_model: int, dtype: str,
        shard_tokens: int = 65536, overwrite: bool = False,
    ) -> StoreWriter:
        if dtype not in STORE_DTYPES:
            raise ValueError(f"store dtype {dtype!r} not in {sorted(STORE_DTYPES)}")
        if shard_tokens < 1 or d_model < 1 or not hooks:
            raise ValueError("shard_tokens and d_model must be positive and hooks non-empty")
        path = Path(path)
        fresh = {"format_version": FORMAT_VERSION, "meta": meta, "hooks": list(hooks), "d_model": d_model,
                 "dtype": dtype, "shard_tokens": shard_tokens, "n_tokens": 0, "complete": False, "shards": [],
                 "stats": {}}
        fresh = _roundtrip(fresh)
        mfile = path / MANIFEST
        if mfile.exists():
            import json

            old = json.loads(mfile.read_text())
            diff = [k for k in _IDENTITY if old.get(k) != fresh[k]]
            if diff and not overwrite:
                detail = "; ".join(_describe(k, old.get(k), fresh[k]) for k in diff)
                raise StoreMismatchError(
                    f"{path} holds a store made with other settings ({detail}); pass --overwrite to replace "
                    "it, or choose another --out"
                )
            if diff:
                _wipe(path)
            else:
                _clean_strays(path, {s["file"] for s in old["shards"]})
                return cls(path, old)
        elif path.exists() and any(path.iterdir()) and not overwrite:
            raise StoreMismatchError(f"{path} exists, is not empty and is not an activation store; "
                                     "choose another --out (or --overwrite to empty it)")
        elif path.exists() and overwrite:
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(mfile, fresh)
        return cls(path, fresh)

    @property
    def n_tokens_done(self) -> int:
        return self.manifest["n_tokens"]

    @property
    def complete(self) -> bool:
        return self.manifest["complete"]

    def append(self, acts: dict[str, np.ndarray], tokens: np.ndarray, doc: np.ndarray, pos: np.ndarray) -> None:
        """Add n tokens: acts maps every hook to (n, d_model); tokens, doc, pos are (n,)."""
        if self.complete:
            raise ValueError(f"store {self.path} is finalized; nothing can be appended")
        n = len(tokens)
        if set(acts) != set(self.manifest["hooks"]):
            raise ValueError(f"append got hooks {sorted(acts)}, the store holds {self.manifest['hooks']}")
        for name, a in acts.items():
            if a.shape != (n, self.manifest["d_model"]):
                raise ValueError(f"activations for {name} have shape {a.shape}, expected ({n}, "
                                 f"{self.manifest['d_model']})")
        for name, a in (("doc", doc), ("pos", pos)):
            if len(a) != n:
                raise ValueError(f"{name} has {len(a)} entries for {n} tokens")
        for name, a in acts.items():
            self._buf[name].append(np.asarray(a).astype(self._np_dtype, copy=False))
        for name, a in (("tokens", tokens), ("doc", doc), ("pos", pos)):
            self._buf[name].append(np.asarray(a).astype(INDEX_FIELDS[name], copy=False))
        self._buffered += n
        while self._buffered >= self.manifest["shard_tokens"]:
            self._flush(self.manifest["shard_tokens"])

    def finalize(self) -> None:
        """Write the last (possibly short) shard and mark the store complete."""
        if self.complete:
            return
        if self._buffered:
            self._flush(self._buffered)
        self.manifest["complete"] = True
        write_json_atomic(self.path / MANIFEST, self.manifest)

    def _flush(self, n: int) -> None:
        tensors = {}
        for name, parts in self._buf.items():
            cat = np.concatenate(parts) if len(parts) > 1 else parts[0]
            tensors[name], rest = cat[:n], cat[n:]
            self._buf[name] = [rest] if len(rest) else []
        self._buffered -= n
        stats = {h: shard_stats(tensors[h], tensors["pos"]) for h in self.manifest["hooks"]}
        for h, st in stats.items():
            for k, v in st.items():
                tensors[f"__stats__/{h}/{k}"] = v
        name = shard_name(len(self.manifest["shards"]))
        f = self.path / name
        write_safetensors(f, tensors)
        self._stats.append(stats)
        m = self.manifest
        m["shards"].append({"file": name, "n_tokens": n, "bytes": f.stat().st_size, "sha256": sha256(f)})
        m["n_tokens"] += n
        m["stats"] = {h: merge_stats([s[h] for s in self._stats]) for h in m["hooks"]}
        write_json_atomic(self.path / MANIFEST, m)

    def _read_stats(self, file: str) -> dict[str, dict[str, np.ndarray]]:
        t = memmap_tensors(self.path / file)
        out: dict[str, dict[str, np.ndarray]] = {}
        for key, v in t.items():
            if key.startswith("__stats__/"):
                _, hook, name = key.split("/")
                out.setdefault(hook, {})[name] = np.array(v)
        return out


def _roundtrip(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj))


def _describe(key: str, old: Any, new: Any) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return ", ".join(f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
    return f"{key}: {old!r} -> {new!r}"


def _clean_strays(path: Path, keep: set[str]) -> None:
    """Remove temporary files and shards the manifest does not list (a crash mid-write leaves these)."""
    for f in path.iterdir():
        if f.name != MANIFEST and f.name not in keep and (f.name.endswith(".tmp") or f.name.startswith("shard_")):
            f.unlink()


def _wipe(path: Path) -> None:
    """Remove only the store's own files (manifest, shards, temporaries)."""
    for f in path.iterdir():
        if f.name == MANIFEST or f.name.startswith("shard_") or f.name.endswith(".tmp"):
            f.unlink()
