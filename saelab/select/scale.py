"""`saelab select scale`: stream a large pool through a selection and report throughput and peak memory.

The pool is built from a source JSONL by cycling its records with a running id (`{"id": i, "text": ...}`)
up to `n` records, so sizes can be compared on the same text. Peak resident memory (ru_maxrss) of the
process is read after the selection; run two sizes in two processes to see that it does not grow with the
pool (it is bounded by one chunk of embeddings plus the per-record scores, 8 bytes each).
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import NamedTuple

from saelab.select.config import SelectConfig
from saelab.select.run import run

__all__ = ["make_pool", "run_scale", "ScaleResult"]


class ScaleResult(NamedTuple):
    """Throughput and memory of one selection over an n-record pool (scale.json holds `_asdict()`)."""

    n_pool: int
    method: str
    chunk: int  # records embedded per pass
    wall_seconds: float  # the whole selection: embedding, scoring, writing
    embed_samples_per_s: float | None  # None when no embedding time was spent
    samples_per_s: float
    peak_rss_mib: float  # the process's peak resident memory after the selection
    embeddings_from_cache: bool


def make_pool(source: Path, n: int, out: Path, text_field: str = "text") -> Path:
    """Write `n` records cycling through the texts of `source` (JSONL) to `out`."""
    texts = [json.loads(x)[text_field] for x in source.read_text().splitlines() if x.strip()]
    if not texts:
        raise ValueError(f"{source} holds no records")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n")
    return out


def run_scale(cfg: SelectConfig, source: Path, n: int) -> ScaleResult:
    """Build an n-record pool from `source` at cfg.pool, select from it, and report throughput and memory."""
    make_pool(source, n, cfg.pool, cfg.text_field)
    t0 = time.perf_counter()
    s = run(cfg)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    out = ScaleResult(
        n_pool=n,
        method=cfg.method,
        chunk=cfg.chunk,
        wall_seconds=round(wall, 1),
        embed_samples_per_s=s["embed_samples_per_s"],
        samples_per_s=round(n / wall, 1),
        peak_rss_mib=round(rss, 1),
        embeddings_from_cache=s["embeddings_from_cache"],
    )
    (Path(cfg.out) / "scale.json").write_text(json.dumps(out._asdict(), indent=2))
    return out
