"""On-disk cache of pool embeddings, keyed by what they depend on: embedder (model weights, hook, SAE), data.

A pool is embedded once per (model, hook, SAE, data hash, options) and then scored against any number of
targets and methods. Parts are written chunk by chunk as the pool streams through, so memory stays flat; the
`meta.json` written last marks a complete entry (an interrupted run leaves no entry that looks complete).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

Embeddings = sp.csr_matrix | np.ndarray

__all__ = ["EmbeddingCache", "Embeddings", "cache_key", "file_digest"]


def cache_key(fields: dict[str, Any]) -> str:
    """16 hex digits of the sorted JSON of `fields`."""
    return hashlib.blake2b(json.dumps(fields, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()


def file_digest(*paths: Path) -> str:
    """16 hex digits of blake2b over the bytes of `paths` (e.g. an SAE's cfg.json and weights)."""
    h = hashlib.blake2b(digest_size=8)
    for p in paths:
        with Path(p).open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class EmbeddingCache:
    """One cache entry: `root/<key>/part-NNNNN.{npz,npy}` + `meta.json` (the key fields, rows, parts)."""

    def __init__(self, root: Path, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.dir = Path(root) / cache_key(fields)

    @property
    def complete(self) -> bool:
        return (self.dir / "meta.json").exists()

    @property
    def meta(self) -> dict[str, Any]:
        return json.loads((self.dir / "meta.json").read_text())

    def parts(self) -> Iterator[Embeddings]:
        """The stored chunks in pool order, one at a time."""
        for i in range(self.meta["parts"]):
            p = self.dir / f"part-{i:05d}"
            yield (
                sp.load_npz(p.with_suffix(".npz")) if p.with_suffix(".npz").exists() else np.load(p.with_suffix(".npy"))
            )

    def start(self) -> None:
        """Begin a fresh entry (removes a partial one left by an interrupted run)."""
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self._n_parts = self._rows = 0

    def write(self, emb: Embeddings) -> None:
        p = self.dir / f"part-{self._n_parts:05d}"
        if sp.issparse(emb):
            sp.save_npz(p.with_suffix(".npz"), sp.csr_matrix(emb), compressed=False)
        else:
            np.save(p.with_suffix(".npy"), np.asarray(emb, np.float32))
        self._n_parts += 1
        self._rows += emb.shape[0]

    def finish(self, extra: dict[str, Any]) -> None:
        meta = {"fields": self.fields, "parts": self._n_parts, "rows": self._rows, **extra}
        tmp = self.dir / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, default=str))
        os.replace(tmp, self.dir / "meta.json")
