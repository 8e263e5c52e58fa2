"""StoreWriter: append activations, write fixed-size shards atomically, resume after a crash."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np

from saelab.store.format import (
    FORMAT_VERSION,
    INDEX_FIELDS,
    MANIFEST,
    STATS_PREFIX,
    STORE_DTYPES,
    StoreCorruptError,
    StoreError,
    StoreMismatchError,
    fsync_dir,
    is_own_file,
    memmap_tensors,
    read_manifest,
    shard_name,
    write_json_atomic,
    write_safetensors,
)
from saelab.store.stats import Partial, fold, shard_stats, summarize
from saelab.store.verify import shard_problems

_IDENTITY = ("format_version", "meta", "hooks", "d_model", "dtype", "shard_tokens")
_FLOATS = {np.dtype(t) for t in (np.float16, ml_dtypes.bfloat16, np.float32, np.float64)}
_PART = re.compile(r"manifest\.part-(\d{5})-of-(\d{5})\.json(\.tmp)?")
_SHARD = re.compile(r"shard_(\d{6,})\.safetensors(\.tmp)?")


class Part(NamedTuple):
    """One process's share of a multi-process harvest: the global shard numbers it writes."""

    index: int  # process index
    count: int  # number of processes
    shards: range  # global shard numbers; the process writes them in order, the last maybe short


def part_manifest_name(index: int, count: int) -> str:
    """The per-process manifest of a multi-process harvest in progress (merged away when it completes)."""
    return f"manifest.part-{index:05d}-of-{count:05d}.json"


class StoreWriter:
    """Buffers appended tokens and writes each full shard, then the manifest, atomically.

    The manifest only ever lists complete shards, so after a crash `create_or_resume` keeps those, deletes
    anything else the store wrote, and reports `n_tokens_done`: the harvester skips that many tokens of its
    deterministic stream and carries on, giving the same bytes as an uninterrupted run.
    """

    @classmethod
    def create_or_resume(
        cls,
        path: str | Path,
        *,
        meta: dict[str, Any],
        hooks: list[str],
        d_model: int,
        dtype: str,
        shard_tokens: int = 65536,
        overwrite: bool = False,
    ) -> StoreWriter:
        """Open the store at `path`: create it, resume a matching one, or refuse (StoreMismatchError) a store
        made with other settings unless `overwrite` (which deletes only the store's own files)."""
        path = Path(path)
        fresh = _fresh_manifest(meta, hooks, d_model, dtype, shard_tokens)
        if (path / MANIFEST).exists():
            old, diff = _identity_diff(path, fresh, overwrite)
            started = _part_counts(path)
            if not diff and started and not overwrite:
                raise StoreMismatchError(
                    f"{path} is a harvest started by {max(started)} processes; resume it with as many "
                    "(--num-processes) or pass --overwrite to start it again"
                )
            if not diff and not started:
                return cls._resume(path, old)
            if not overwrite:
                detail = "; ".join(_describe(k, old.get(k), fresh[k]) for k in diff)
                raise StoreMismatchError(
                    f"{path} holds a store made with other settings ({detail}); pass --overwrite "
                    "(overwrite=True) to replace it, or choose another --out"
                )
            _remove_own_files(path, keep=set())
        elif path.exists():
            if not path.is_dir():
                raise StoreMismatchError(f"{path} is a file, not a store directory; choose another --out")
            foreign = sorted(f.name for f in path.iterdir() if not _is_own(f.name))
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise StoreMismatchError(
                    f"{path} is not empty ({shown}) and is not an activation store; choose another --out "
                    "(--overwrite never deletes other files)"
                )
            _remove_own_files(path, keep=set())  # debris of a crash before the first manifest
        path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path / MANIFEST, fresh)
        fsync_dir(path)
        return cls(path, fresh, None)

    @classmethod
    def open_shared(
        cls,
        path: str | Path,
        *,
        meta: dict[str, Any],
        hooks: list[str],
        d_model: int,
        dtype: str,
        shard_tokens: int,
        processes: int,
        overwrite: bool = False,
        act: bool = True,
    ) -> bool:
        """Prepare the store of a harvest by `processes` processes; True if it is already complete.

        Every process calls it with act=False first (the same checks, so all raise the same error), then
        process 0 alone with act=True creates the store, or replaces it when `overwrite`, or leaves a matching
        one for the processes to resume. The manifest stays shard-less until `merge_parts`; each process
        records its progress in its own part manifest (`create_or_resume_part`).
        """
        path = Path(path)
        fresh = _fresh_manifest(meta, hooks, d_model, dtype, shard_tokens)
        started = _part_counts(path)
        if (path / MANIFEST).exists():
            old, diff = _identity_diff(path, fresh, overwrite)
            if not diff and old["complete"]:
                return True
            problem = None
            if diff:
                problem = (
                    "holds a store made with other settings ("
                    + "; ".join(_describe(k, old.get(k), fresh[k]) for k in diff)
                    + ")"
                )
            elif old["shards"]:
                problem = f"is a harvest started by one process ({old['n_tokens']:,} tokens); resume it with one"
            elif started - {processes}:
                problem = f"is a harvest started by {max(started)} processes; resume it with as many"
            if problem is None:
                return False
            if not overwrite:
                raise StoreMismatchError(
                    f"{path} {problem}; pass --overwrite (overwrite=True) to replace it, or choose another --out"
                )
        elif path.exists():
            if not path.is_dir():
                raise StoreMismatchError(f"{path} is a file, not a store directory; choose another --out")
            foreign = sorted(f.name for f in path.iterdir() if not _is_own(f.name))
            if foreign:
                raise StoreMismatchError(
                    f"{path} is not empty ({', '.join(foreign[:3])}) and is not an "
                    "activation store; choose another --out"
                )
        if act:
            _remove_own_files(path, keep=set())
            path.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path / MANIFEST, fresh)
            fsync_dir(path)
        return False

    @classmethod
    def create_or_resume_part(cls, path: str | Path, part: Part) -> StoreWriter:
        """This process's writer in a store prepared by `open_shared`: resumes after its last complete shard
        (its part manifest lists them) and removes its own debris, never another process's shards."""
        path = Path(path)
        main = read_manifest(path)
        file = path / part_manifest_name(part.index, part.count)
        fresh = {k: main[k] for k in _IDENTITY} | {
            "n_tokens": 0,
            "complete": False,
            "shards": [],
            "stats": {},
            "first_shard": part.shards.start,
            "end_shard": part.shards.stop,
        }
        m = json.loads(file.read_text()) if file.exists() else None
        same = m is not None and all(m.get(k) == fresh[k] for k in (*_IDENTITY, "first_shard", "end_shard"))
        if same:
            problems = shard_problems(path, m, checksums=False)
            if problems:
                listing = "; ".join(f"{p.file}: {p.problem}" for p in problems)
                raise StoreCorruptError(
                    f"cannot resume {path} (process {part.index}): {listing}; pass --overwrite to start it again"
                )
        else:
            m = fresh
        keep = {s["file"] for s in m["shards"]}
        for f in path.iterdir():
            hit = _SHARD.fullmatch(f.name)
            if hit and int(hit.group(1)) in part.shards and f.name not in keep:
                f.unlink()
        totals: dict[str, Partial | None] = {h: None for h in m["hooks"]}
        for s in m["shards"]:
            for h, p in _read_partials(path / s["file"]).items():
                totals[h] = fold(totals[h], p)
        if not same:
            write_json_atomic(file, m)
            fsync_dir(path)
        return cls(path, m, totals, part)

    def __init__(
        self, path: Path, manifest: dict[str, Any], totals: dict[str, Partial] | None, part: Part | None = None
    ) -> None:
        """Use `create_or_resume` (or `create_or_resume_part`); this takes a validated manifest and the
        folded statistics so far."""
        self.path = path
        self.manifest = manifest
        self.part = part
        self._file = MANIFEST if part is None else part_manifest_name(part.index, part.count)
        self._first = 0 if part is None else part.shards.start
        self._dtype = np.dtype(STORE_DTYPES[manifest["dtype"]])
        self._buf: dict[str, list[np.ndarray]] = {k: [] for k in [*manifest["hooks"], *INDEX_FIELDS]}
        self._buffered = 0
        self._totals = totals or {h: None for h in manifest["hooks"]}

    @property
    def n_tokens_done(self) -> int:
        """Tokens safely on disk (listed in the manifest); buffered tokens are not counted."""
        return self.manifest["n_tokens"]

    @property
    def complete(self) -> bool:
        return self.manifest["complete"]

    def append(self, acts: dict[str, np.ndarray], tokens: np.ndarray, doc: np.ndarray, pos: np.ndarray) -> None:
        """Add n tokens: `acts` maps every hook to (n, d_model) floats; tokens, doc, pos are (n,) integers.

        Each time a shard's worth is buffered it is written (and the manifest updated) before returning.
        """
        if self.complete:
            raise StoreError(f"store {self.path} is finalized; nothing can be appended")
        index = {"tokens": np.asarray(tokens), "doc": np.asarray(doc), "pos": np.asarray(pos)}
        n = len(index["tokens"])
        for name, a in index.items():
            if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
                raise ValueError(
                    f"{name} must be a 1-D integer array of {n} entries (one per token), "
                    f"got shape {a.shape} dtype {a.dtype}"
                )
        if set(acts) != set(self.manifest["hooks"]):
            raise ValueError(f"append got hooks {sorted(acts)}, the store holds {self.manifest['hooks']}")
        acts = {h: np.asarray(a) for h, a in acts.items()}
        d = self.manifest["d_model"]
        for name, a in acts.items():
            if a.shape != (n, d):
                raise ValueError(
                    f"activations for {name} have shape {a.shape}, expected ({n}, {d}): "
                    "(tokens, d_model), flattened over batch and sequence"
                )
            if a.dtype not in _FLOATS:
                raise ValueError(f"activations for {name} have dtype {a.dtype}; expected a float dtype")
        for name, a in acts.items():
            self._buf[name].append(a.astype(self._dtype, copy=False))
        for name, a in index.items():
            self._buf[name].append(a.astype(INDEX_FIELDS[name], copy=False))
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
        write_json_atomic(self.path / self._file, self.manifest)
        fsync_dir(self.path)

    @classmethod
    def _resume(cls, path: Path, manifest: dict[str, Any]) -> StoreWriter:
        problems = shard_problems(path, manifest, checksums=False)
        if problems:
            listing = "; ".join(f"{p.file}: {p.problem}" for p in problems)
            raise StoreCorruptError(f"cannot resume {path}: {listing}; pass --overwrite to start it again")
        _remove_own_files(path, keep={MANIFEST, *(s["file"] for s in manifest["shards"])})
        totals: dict[str, Partial | None] = {h: None for h in manifest["hooks"]}
        for s in manifest["shards"]:
            for h, part in _read_partials(path / s["file"]).items():
                totals[h] = fold(totals[h], part)
        return cls(path, manifest, totals)

    def _flush(self, n: int) -> None:
        tensors = {}
        for name, parts in self._buf.items():
            cat = np.concatenate(parts) if len(parts) > 1 else parts[0]
            tensors[name], rest = cat[:n], cat[n:]
            self._buf[name] = [rest] if len(rest) else []
        self._buffered -= n
        m = self.manifest
        for h in m["hooks"]:
            part = shard_stats(tensors[h], tensors["pos"])
            self._totals[h] = fold(self._totals[h], part)
            tensors.update({f"{STATS_PREFIX}{h}/{k}": v for k, v in part.items()})
        number = self._first + len(m["shards"])
        if self.part is not None and number not in self.part.shards:
            raise StoreError(f"process {self.part.index} may write shards {self.part.shards}, not {number}")
        name = shard_name(number)
        written = write_safetensors(self.path / name, tensors)
        m["shards"].append({"file": name, "n_tokens": n, "bytes": written.bytes, "sha256": written.sha256})
        m["n_tokens"] += n
        m["stats"] = {h: summarize(self._totals[h]) for h in m["hooks"]}
        write_json_atomic(self.path / self._file, m)
        fsync_dir(self.path)


def merge_parts(path: str | Path, processes: int) -> dict[str, Any]:
    """Process 0, once every process has finalized its part: write the store's one manifest listing all
    shards in order (statistics folded in shard order, as one process would have), then drop the parts.

    The result is byte-identical to the manifest of a one-process harvest of the same windows.
    """
    path = Path(path)
    main = read_manifest(path)
    parts = []
    for i in range(processes):
        f = path / part_manifest_name(i, processes)
        if not f.exists():
            raise StoreCorruptError(f"{f} is missing: process {i} has not written its part of {path}")
        parts.append(json.loads(f.read_text()))
    unfinished = [i for i, m in enumerate(parts) if not m["complete"]]
    if unfinished:
        raise StoreError(f"processes {unfinished} have not finished their part of {path}; rerun the harvest")
    shards: list[dict[str, Any]] = []
    for i, m in enumerate(parts):
        if m["shards"] and m["first_shard"] != len(shards):
            raise StoreCorruptError(
                f"process {i}'s shards of {path} start at {m['first_shard']}, but the "
                f"processes before it wrote {len(shards)}: the corpus ended early there"
            )
        shards += m["shards"]
    totals: dict[str, Partial | None] = {h: None for h in main["hooks"]}
    for s in shards:
        for h, p in _read_partials(path / s["file"]).items():
            totals[h] = fold(totals[h], p)
    main.update(
        shards=shards,
        n_tokens=sum(s["n_tokens"] for s in shards),
        complete=True,
        stats={h: summarize(t) for h, t in totals.items()} if shards else {},
    )
    write_json_atomic(path / MANIFEST, main)
    fsync_dir(path)
    for i in range(processes):
        (path / part_manifest_name(i, processes)).unlink()
    fsync_dir(path)
    return main


def _fresh_manifest(
    meta: dict[str, Any], hooks: list[str], d_model: int, dtype: str, shard_tokens: int
) -> dict[str, Any]:
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
    }
    try:
        return json.loads(json.dumps(fresh))  # as it will read back: tuples become lists, keys strings
    except TypeError as e:
        raise ValueError(f"store meta must be JSON-serialisable: {e}") from e


def _read_partials(file: Path) -> dict[str, Partial]:
    out: dict[str, Partial] = {}
    for key, v in memmap_tensors(file).items():
        if key.startswith(STATS_PREFIX):
            hook, name = key[len(STATS_PREFIX) :].rsplit("/", 1)
            out.setdefault(hook, {})[name] = np.array(v)
    return out


def _describe(key: str, old: Any, new: Any) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return ", ".join(f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
    return f"{key}: {old!r} -> {new!r}"


def _is_own(name: str) -> bool:
    return is_own_file(name) or _PART.fullmatch(name) is not None


def _part_counts(path: Path) -> set[int]:
    """Process counts of the per-process manifests in `path` (empty unless a multi-process harvest is there)."""
    return {int(m.group(2)) for f in path.iterdir() if (m := _PART.fullmatch(f.name))} if path.is_dir() else set()


def _remove_own_files(path: Path, keep: set[str]) -> None:
    """Delete files the store writes (shards, manifests, their temporaries) other than `keep`."""
    if not path.is_dir():
        return
    for f in path.iterdir():
        if _is_own(f.name) and f.name not in keep:
            f.unlink()


def _identity_diff(path: Path, fresh: dict, overwrite: bool) -> tuple[dict | None, list[str]]:
    """(existing manifest or None when unreadable and `overwrite`, identity keys where it differs from `fresh`)."""
    try:
        old = read_manifest(path)
    except StoreError:
        if not overwrite:
            raise
        old = None
    return old, [k for k in _IDENTITY if old is None or old.get(k) != fresh[k]]
