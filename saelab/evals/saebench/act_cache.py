"""Activations of the suite's prompts and token batches, kept on disk between SAEs (`EvalConfig.suite_cache`).

What the model computes at a hook on absorption's probe and ICL prompts, on sparse probing's prompts and on the
core / MDL token batches does not depend on the SAE being scored, so the second SAE at the same hook reads them
back instead of running the model. An entry is keyed by everything the activations depend on: the model's name
and weight processing, the hook, the head (hook_z), the position read (or `tokens` for whole batches) and a
SHA-256 of the token ids in order. It is one `.npz` (the activations, float32, and each part's row count) and a
`.json` beside it naming what it holds; both are written to temporary names and renamed, so a killed run never
leaves half an entry. Deleting the folder is always safe: it only costs the model passes again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np


class CacheKey(NamedTuple):
    """What a cached array depends on (besides the token ids, hashed into `digest`)."""

    model: str
    processing: str
    hook: str
    head: int | None
    position: int | str  # the token position read from each prompt, or "tokens" for whole token batches


def digest(key: CacheKey, ids: Sequence[Sequence[int]] | Sequence[np.ndarray]) -> str:
    """SHA-256 of the key and every token list (its length and its ids as int64), in order."""
    h = hashlib.sha256(json.dumps(key._asdict(), sort_keys=True).encode())
    for row in ids:
        a = np.asarray(row, np.int64).ravel()
        h.update(np.int64(a.size).tobytes())
        h.update(a.tobytes())
    return h.hexdigest()


def cached(
    root: Path | None, key: CacheKey, ids: Sequence, compute: Callable[[], list[np.ndarray]]
) -> list[np.ndarray]:
    """The parts `compute()` returns (float32 arrays of rows), read from `root` when an entry for (key, ids)
    exists there, else computed and stored; `root` None always computes."""
    if root is None:
        return compute()
    name = digest(key, ids)
    path = Path(root) / f"{name}.npz"
    if path.exists():
        with np.load(path) as f:
            acts, counts = f["acts"], f["counts"]
        return np.split(acts, np.cumsum(counts)[:-1])
    parts = [np.asarray(p, np.float32) for p in compute()]
    if not parts:  # nothing to keep (an empty corpus): the caller reports it
        return parts
    path.parent.mkdir(parents=True, exist_ok=True)
    acts = np.concatenate(parts)
    _atomic(path, lambda f: np.savez(f, acts=acts, counts=np.array([len(p) for p in parts], np.int64)))
    meta = {**key._asdict(), "token_lists": len(ids), "rows": len(acts), "shape": list(acts.shape)}
    _atomic(path.with_suffix(".json"), lambda f: f.write(json.dumps(meta, indent=2).encode()))
    return parts


def _atomic(path: Path, write: Callable) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    tmp.replace(path)
