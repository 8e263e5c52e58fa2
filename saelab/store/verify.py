"""Check a store's shards against its manifest: present, the recorded size, the recorded checksum, and (deep)
every activation finite."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from saelab.store.format import MANIFEST, memmap_tensors, read_manifest, sha256

_ROWS = 1 << 14  # rows per finiteness pass: bounded memory on any shard size


class Problem(NamedTuple):
    file: str  # file name inside the store directory
    problem: str  # what is wrong, in words


def verify_store(path: str | Path, deep: bool = False) -> list[Problem]:
    """Every missing, truncated or checksum-mismatched shard, named; empty when the store is sound.

    The manifest's count of non-finite values is always checked; `deep` also reads every activation (a second
    full read) and names the shard, row and hook of each NaN or Inf, which a consistent checksum cannot show.
    """
    path = Path(path)
    manifest = read_manifest(path)
    problems = shard_problems(path, manifest, checksums=True)
    for h, st in manifest["stats"].items():
        if st.get("n_nonfinite"):
            problems.append(
                Problem(
                    MANIFEST,
                    f"statistics of hook {h} count {st['n_nonfinite']} NaN/Inf values (`saelab store verify "
                    "--deep` locates them); re-harvest with --overwrite",
                )
            )
    if deep:  # every shard that can be read, a checksum mismatch included (a flipped bit may be the NaN)
        unreadable = {p.file for p in shard_problems(path, manifest, checksums=False)}
        problems += [
            p for s in manifest["shards"] if s["file"] not in unreadable for p in nonfinite_rows(path, s, manifest)
        ]
    return problems


def nonfinite_rows(path: Path, shard: dict[str, Any], manifest: dict[str, Any]) -> list[Problem]:
    """One Problem per hook of `shard` holding a NaN or Inf, naming its first such row (in the shard and in the
    store) and how many rows are affected."""
    start = 0
    for s in manifest["shards"]:
        if s["file"] == shard["file"]:
            break
        start += s["n_tokens"]
    tensors = memmap_tensors(path / shard["file"])
    out = []
    for h in manifest["hooks"]:
        a = tensors[h]  # (n, d_model)
        rows = np.concatenate(
            [np.flatnonzero(~np.isfinite(a[lo : lo + _ROWS]).all(1)) + lo for lo in range(0, len(a), _ROWS)]
            or [np.zeros(0, np.int64)]
        )
        if len(rows):
            r = int(rows[0])
            kinds = sorted({"nan" if np.isnan(v) else "inf" for v in a[r][~np.isfinite(a[r])].astype(np.float32)})
            out.append(
                Problem(
                    shard["file"],
                    f"hook {h}: {len(rows)} row(s) with NaN/Inf activations, first row {r} (store row "
                    f"{start + r}: {', '.join(kinds)}); re-harvest with --overwrite (a float32 harvest avoids "
                    "bfloat16 overflow)",
                )
            )
    return out


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
