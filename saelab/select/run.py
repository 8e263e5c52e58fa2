"""`run(cfg)`: score a pool against a target, keep the top fraction, write it byte for byte.

Outputs in `cfg.out`:
- `selected.jsonl`: the selected records in pool order, each line exactly the bytes of the pool's line;
- `scores.tsv`: every pool record's line number, score, rank (1 = best; tied scores in a seeded random order
  of the records, see similarity.rank_order) and whether it was selected;
- `summary.json`: method, sizes, score threshold, timings, throughput and the embedding cache entry.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from saelab.select.config import SelectConfig
from saelab.select.pool import read_records, read_texts
from saelab.select.scoring import count_records, pool_keys, score_pool
from saelab.select.similarity import rank_order, top_fraction

OUTPUTS = ("selected.jsonl", "scores.tsv", "summary.json")

__all__ = ["run", "write_selection", "OUTPUTS"]


def run(cfg: SelectConfig, model: Any = None) -> dict[str, Any]:
    """Select the top `cfg.ratio` of `cfg.pool` by `cfg.method`; returns the summary written to summary.json.
    `model`: an already loaded saelab Model to use instead of loading `cfg.model`."""
    out = Path(cfg.out)
    if not cfg.overwrite and any((out / f).exists() for f in OUTPUTS):
        raise ValueError(f"{out} already holds a selection; pass --overwrite or choose another --out")
    t0 = time.perf_counter()
    targets = read_texts(cfg.target, cfg.target_field or cfg.text_field)
    n = count_records(cfg.pool, cfg.text_field)
    keys = pool_keys(cfg)
    res = score_pool(cfg, targets, n, model=model, keys=keys)
    chosen = top_fraction(res.scores, cfg.ratio, keys)
    out.mkdir(parents=True, exist_ok=True)
    write_selection(cfg.pool, cfg.text_field, res.scores, chosen, out, keys)
    total = time.perf_counter() - t0
    summary = {
        "method": cfg.method,
        "pool": str(cfg.pool),
        "target": str(cfg.target),
        "n_pool": n,
        "n_target": len(targets),
        "ratio": cfg.ratio,
        "n_selected": len(chosen),
        "score_threshold": float(res.scores[chosen[-1]]),
        "embed_seconds": round(res.embed_s, 3),
        "score_seconds": round(res.score_s, 3),
        "total_seconds": round(total, 3),
        "embed_samples_per_s": round(n / res.embed_s, 1) if res.embed_s > 0 else None,
        "embeddings_from_cache": res.cached,
        **res.info,
        "config": cfg.model_dump(mode="json"),
    }
    _atomic_write(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary


def write_selection(
    pool: Path, text_field: str, scores: np.ndarray, chosen: np.ndarray, out: Path, keys: np.ndarray | None = None
) -> None:
    """selected.jsonl (pool bytes, pool order) and scores.tsv (every record; rank ties broken by `keys`) in one
    more pool pass."""
    keep = np.zeros(len(scores), bool)
    keep[chosen] = True
    rank = np.empty(len(scores), np.int64)
    rank[rank_order(scores, keys)] = np.arange(1, len(scores) + 1)
    sel_tmp, sc_tmp = out / "selected.jsonl.tmp", out / "scores.tsv.tmp"
    with sel_tmp.open("wb") as sel, sc_tmp.open("w") as sc:
        sc.write("line\tscore\trank\tselected\n")
        for i, r in enumerate(read_records(pool, text_field)):
            if keep[i]:
                sel.write(r.raw if r.raw.endswith(b"\n") else r.raw + b"\n")  # last line may lack one
            sc.write(f"{r.line}\t{scores[i]:.8g}\t{rank[i]}\t{int(keep[i])}\n")
    os.replace(sel_tmp, out / "selected.jsonl")
    os.replace(sc_tmp, out / "scores.tsv")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
