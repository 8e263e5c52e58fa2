"""The multi-process part protocol of a store: each process writes its own block of shards, then one merge.

`open_shared` prepares the store (every process checks, process 0 creates); each process resumes its block
from its own part manifest (`resume_part`, used by `StoreWriter.create_or_resume_part`) and writes shards
under their global numbers; once all parts are final, process 0 `merge_parts` into the one manifest, which is
byte-identical to a one-process harvest's. The main manifest stays shard-less until then, so a reader never
sees a half-made store.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from saelab.store.format import (
    IDENTITY,
    MANIFEST,
    StoreCorruptError,
    StoreError,
    fresh_manifest,
    fsync_dir,
    identity_diff,
    other_settings,
    read_manifest,
    refuse_foreign,
    refuse_replace,
    write_fresh,
    write_json_atomic,
)
from saelab.store.stats import Partial, fold_shards, summarize
from saelab.store.verify import shard_problems

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


def part_counts(path: Path) -> set[int]:
    """Process counts of the per-process manifests in `path` (empty unless a multi-process harvest is there)."""
    return {int(m.group(2)) for f in path.iterdir() if (m := _PART.fullmatch(f.name))} if path.is_dir() else set()


def open_shared(
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
    records its progress in its own part manifest (`resume_part`).
    """
    path = Path(path)
    fresh = fresh_manifest(meta, hooks, d_model, dtype, shard_tokens)
    started = part_counts(path)
    if (path / MANIFEST).exists():
        old, diff = identity_diff(path, fresh, overwrite)
        if not diff and old["complete"]:
            return True
        problem = None
        if diff:
            problem = other_settings(old, fresh, diff)
        elif old["shards"]:
            problem = f"is a harvest started by one process ({old['n_tokens']:,} tokens); resume it with one"
        elif started - {processes}:
            problem = f"is a harvest started by {max(started)} processes; resume it with as many"
        if problem is None:
            return False
        if not overwrite:
            refuse_replace(path, problem)
    else:
        refuse_foreign(path)
    if act:
        write_fresh(path, fresh)
    return False


def resume_part(path: Path, part: Part) -> tuple[dict[str, Any], dict[str, Partial | None]]:
    """(part manifest, statistics folded over its shards) of this process in a store prepared by
    `open_shared`: resumes after its last complete shard and removes its own debris, never another process's
    shards. A fresh part manifest is written when there was none (or one of other settings)."""
    main = read_manifest(path)
    file = path / part_manifest_name(part.index, part.count)
    fresh = {k: main[k] for k in IDENTITY} | {
        "n_tokens": 0,
        "complete": False,
        "shards": [],
        "stats": {},
        "first_shard": part.shards.start,
        "end_shard": part.shards.stop,
    }
    m = json.loads(file.read_text()) if file.exists() else None
    same = m is not None and all(m.get(k) == fresh[k] for k in (*IDENTITY, "first_shard", "end_shard"))
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
    totals = fold_shards(path, (s["file"] for s in m["shards"]), m["hooks"])
    if not same:
        write_json_atomic(file, m)
        fsync_dir(path)
    return m, totals


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
    totals = fold_shards(path, (s["file"] for s in shards), main["hooks"])
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
