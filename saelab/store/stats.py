"""Per-hook activation statistics: float64 partial sums per shard, merged in shard order into the manifest.

The trainer scales SAE inputs by them (mean squared norm, BOS excluded: BOS activations are often orders of
magnitude larger and are left out of training by default). Partial sums are stored in each shard, so a
resumed store folds exactly the same numbers in the same order and gets a byte-identical manifest.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from saelab.store.format import STATS_PREFIX, memmap_tensors

NORM_BINS = np.logspace(-3, 5, 65)  # fixed edges for the histogram of L2 norms; outside values are clipped
_CHUNK = 256  # rows per float64 pass: keeps temporaries in cache, where whole-shard passes spill to memory

Partial = dict[str, np.ndarray]  # one hook's sums over one shard (or several, once folded)


def shard_stats(acts: np.ndarray, pos: np.ndarray) -> Partial:
    """float64 partial sums of one hook's activations `acts` (n, d) over one shard; BOS is `pos == 0`."""
    with np.errstate(invalid="ignore"):  # NaN/Inf propagate into the sums quietly and are counted
        return _shard_stats(acts, pos)


def _shard_stats(acts: np.ndarray, pos: np.ndarray) -> Partial:
    n, d = acts.shape
    keep = pos != 0
    sq_norms = np.empty(n)
    row_max = np.empty(n)
    sums = np.zeros((4, d))  # sum x, sum x^2 over non-BOS rows; the same over BOS rows
    for lo in range(0, n, _CHUNK):
        a, k = acts[lo : lo + _CHUNK], keep[lo : lo + _CHUNK]
        row_max[lo : lo + len(a)] = np.abs(a).max(1)
        x = a.astype(np.float64)
        x2 = x * x
        sq_norms[lo : lo + len(a)] = x2.sum(1)
        if k.all():
            sums[0] += x.sum(0)
            sums[1] += x2.sum(0)
        else:
            b = ~k
            sums += np.stack([x[k].sum(0), x2[k].sum(0), x[b].sum(0), x2[b].sum(0)])
    norms = np.sqrt(sq_norms)
    nk = norms[keep]
    return {
        "n": np.array([n, keep.sum()], np.float64),
        "norm_sums": np.array([norms.sum(), sq_norms.sum(), nk.sum(), sq_norms[keep].sum()]),
        "x_sums": sums,
        "max_abs": np.array([row_max.max(initial=0.0), row_max[keep].max(initial=0.0)]),
        "norm_hist": np.histogram(np.clip(norms, NORM_BINS[0], NORM_BINS[-1]), NORM_BINS)[0].astype(float),
        "nonfinite": np.array([n * d - np.count_nonzero(np.isfinite(acts))], np.float64),
    }


def fold(total: Partial | None, part: Partial) -> Partial:
    """Combine running sums with the next shard's (sums add, maxima take the max)."""
    if total is None:
        return {k: v.copy() for k, v in part.items()}
    return {k: np.maximum(v, part[k]) if k == "max_abs" else v + part[k] for k, v in total.items()}


def fold_shards(path: Path, files: Iterable[str], hooks: list[str]) -> dict[str, Partial | None]:
    """Every hook's partial sums folded over the shards `files` of the store at `path`, in the order given
    (None for a hook when there are no shards): what a writer resuming after them, or a merge, starts from."""
    totals: dict[str, Partial | None] = {h: None for h in hooks}
    for file in files:
        for h, p in _read_partials(path / file).items():
            totals[h] = fold(totals[h], p)
    return totals


def summarize(total: Partial | None) -> dict[str, Any]:
    """The manifest's statistics for one hook from its folded partial sums.

    `mean`/`var` are per dimension over all tokens; the `_no_bos` keys exclude window position 0.
    `n_nonfinite` counts NaN and Inf entries (the harvest refuses them, so it is 0 unless a store was written
    by other means); where it is not 0 the other statistics are NaN or Inf too.
    """
    if total is None:
        return {}
    n_all, n_keep = total["n"]
    s_norm, s_sq, s_norm_k, s_sq_k = total["norm_sums"]
    sx_k, sx2_k, sx_b, sx2_b = total["x_sums"]
    mean, var = _moments(sx_k + sx_b, sx2_k + sx2_b, n_all)
    mean_k, var_k = _moments(sx_k, sx2_k, n_keep)
    return {
        "n_tokens": int(n_all),
        "n_tokens_no_bos": int(n_keep),
        "mean_norm": _ratio(s_norm, n_all),
        "mean_sq_norm": _ratio(s_sq, n_all),
        "mean_norm_no_bos": _ratio(s_norm_k, n_keep),
        "mean_sq_norm_no_bos": _ratio(s_sq_k, n_keep),
        "mean": mean,
        "var": var,
        "mean_no_bos": mean_k,
        "var_no_bos": var_k,
        "max_abs": float(total["max_abs"][0]),
        "max_abs_no_bos": float(total["max_abs"][1]),
        "norm_histogram": {"edges": NORM_BINS.tolist(), "counts": [int(c) for c in total["norm_hist"]]},
        "n_nonfinite": int(total["nonfinite"][0]) if "nonfinite" in total else 0,
    }


def _read_partials(file: Path) -> dict[str, Partial]:
    out: dict[str, Partial] = {}
    for key, v in memmap_tensors(file).items():
        if key.startswith(STATS_PREFIX):
            hook, name = key[len(STATS_PREFIX) :].rsplit("/", 1)
            out.setdefault(hook, {})[name] = np.array(v)
    return out


def _ratio(a: float, n: float) -> float:
    return float(a / n) if n else 0.0


def _moments(sx: np.ndarray, sx2: np.ndarray, n: float) -> tuple[list[float], list[float]]:
    if not n:
        return [0.0] * len(sx), [0.0] * len(sx)
    mean = sx / n
    with np.errstate(invalid="ignore"):  # inf - inf where a store holds Inf: NaN, counted in n_nonfinite
        return mean.tolist(), np.maximum(sx2 / n - mean**2, 0.0).tolist()
