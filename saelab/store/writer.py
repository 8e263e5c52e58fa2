"""StoreWriter: append activations, write fixed-size shards atomically, resume after a crash.

One process writes a store with `create_or_resume`; several processes each write a block of its shards with
`create_or_resume_part` under the part protocol of `saelab.store.parts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from saelab.store.format import (
    INDEX_FIELDS,
    MANIFEST,
    STATS_PREFIX,
    STORE_DTYPES,
    StoreCorruptError,
    StoreError,
    StoreMismatchError,
    fresh_manifest,
    fsync_dir,
    identity_diff,
    other_settings,
    refuse_foreign,
    refuse_replace,
    remove_own_files,
    shard_name,
    write_fresh,
    write_json_atomic,
    write_safetensors,
)
from saelab.store.parts import Part, merge_parts, open_shared, part_counts, part_manifest_name, resume_part
from saelab.store.stats import Partial, fold, fold_shards, shard_stats, summarize
from saelab.store.verify import shard_problems

__all__ = ["Part", "StoreWriter", "merge_parts", "part_manifest_name"]

_FLOATS = {np.dtype(t) for t in (np.float16, ml_dtypes.bfloat16, np.float32, np.float64)}


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
        fresh = fresh_manifest(meta, hooks, d_model, dtype, shard_tokens)
        if (path / MANIFEST).exists():
            old, diff = identity_diff(path, fresh, overwrite)
            started = part_counts(path)
            if not diff and started and not overwrite:
                raise StoreMismatchError(
                    f"{path} is a harvest started by {max(started)} processes; resume it with as many "
                    "(--num-processes) or pass --overwrite to start it again"
                )
            if not diff and not started:
                return cls._resume(path, old)
            if not overwrite:
                refuse_replace(path, other_settings(old, fresh, diff))
        else:
            refuse_foreign(path)
        write_fresh(path, fresh)
        return cls(path, fresh, None)

    open_shared = staticmethod(open_shared)

    @classmethod
    def create_or_resume_part(cls, path: str | Path, part: Part) -> StoreWriter:
        """This process's writer in a store prepared by `open_shared`: resumes after its last complete shard
        (its part manifest lists them) and removes its own debris, never another process's shards."""
        m, totals = resume_part(Path(path), part)
        return cls(path=Path(path), manifest=m, totals=totals, part=part)

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        totals: dict[str, Partial | None] | None,
        part: Part | None = None,
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
        self._skipped = 0  # windows left out since the last manifest write
        self._totals = totals or {h: None for h in manifest["hooks"]}

    @property
    def n_tokens_done(self) -> int:
        """Tokens safely on disk (listed in the manifest); buffered tokens are not counted."""
        return self.manifest["n_tokens"]

    @property
    def skipped_windows(self) -> int:
        """Windows left out and recorded in the manifest (what a resumed harvest must skip again)."""
        return self.manifest.get("skipped_windows", 0)

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

    def skip(self, n_windows: int) -> None:
        """Record that the harvest left out `n_windows` windows here (between what was appended before and
        after): the manifest counts them with the next shard written, so a resume skips them too."""
        if self.complete:
            raise StoreError(f"store {self.path} is finalized; nothing can be skipped")
        self._skipped += int(n_windows)

    def finalize(self) -> None:
        """Write the last (possibly short) shard and mark the store complete."""
        if self.complete:
            return
        if self._buffered:
            self._flush(self._buffered)
        self._take_skipped()
        self.manifest["complete"] = True
        write_json_atomic(self.path / self._file, self.manifest)
        fsync_dir(self.path)

    @classmethod
    def _resume(cls, path: Path, manifest: dict[str, Any]) -> StoreWriter:
        problems = shard_problems(path, manifest, checksums=False)
        if problems:
            listing = "; ".join(f"{p.file}: {p.problem}" for p in problems)
            raise StoreCorruptError(f"cannot resume {path}: {listing}; pass --overwrite to start it again")
        remove_own_files(path, keep={MANIFEST, *(s["file"] for s in manifest["shards"])})
        return cls(path, manifest, fold_shards(path, (s["file"] for s in manifest["shards"]), manifest["hooks"]))

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
        safe = m["n_tokens"]
        try:
            written = write_safetensors(self.path / name, tensors)
            m["shards"].append({"file": name, "n_tokens": n, "bytes": written.bytes, "sha256": written.sha256})
            m["n_tokens"] += n
            m["stats"] = {h: summarize(self._totals[h]) for h in m["hooks"]}
            self._take_skipped()
            write_json_atomic(self.path / self._file, m)
            fsync_dir(self.path)
        except OSError as e:
            (self.path / f"{name}.tmp").unlink(missing_ok=True)  # give the space back
            raise StoreError(
                f"writing {name} of store {self.path} failed ({e.strerror or e}); free space (or fix the disk) and "
                f"rerun the same harvest: it resumes after the last complete shard ({safe:,} tokens are on disk)"
            ) from e

    def _take_skipped(self) -> None:
        """Move the pending skip count into the manifest about to be written. Skips are recorded while less
        than a shard is buffered, so each lies before the shard boundary being written: counting it now
        keeps `n_tokens_done` plus the skipped windows equal to the windows consumed at that boundary."""
        if self._skipped:
            self.manifest["skipped_windows"] = self.manifest.get("skipped_windows", 0) + self._skipped
            self._skipped = 0
