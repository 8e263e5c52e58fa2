"""Check a store's shards against its manifest: present, the recorded size, the recorded checksum."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from saelab.store.format import MANIFEST, read_manifest, sha256


class Problem(NamedTuple):
    file: str  # file name inside the store directory
    problem: str  # what is wrong, in words


def verify_store(path: str | Path) -> list[Problem]:
    """Every missing, truncated or checksum-mismatched shard, named; empty when the store is sound."""
    path = Path(path)
    return shard_problems(path, read_manifest(path), checksums=True)


def shard_problems(path: Path, manifest: dict[str, Any], checksums: bool) -> list[Problem]:
    """Problems of the shards `manifest` lists; sizes only (fast) unless `checksums` (reads every byte)."""
    problems = []
    listed = sum(s["n_tokens"] for s in manifest["shards"])
    if listed != manifest["n_tokens"]:
        problems.append(Problem(MANIFEST, f"lists shards of {listed} tokens, but n_tokens is {manifest['n_tokens']}"))
    for s in manifest["shards"]:
        f = path / s["file"]
        if not f.is_file():
            problems.append(Problem(s["file"], "missing"))
        elif f.stat().st_size != s["bytes"]:
            problems.append(
                Problem(s["file"], f"truncated or grown: size {f.stat().st_size} bytes, manifest says {s['bytes']}")
            )
        elif checksums and sha256(f) != s["sha256"]:
            problems.append(Problem(s["file"], "checksum mismatch (corrupt data)"))
    return problems
