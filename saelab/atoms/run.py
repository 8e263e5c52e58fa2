"""`run(AtomsConfig)`: the atoms table of docs/methods.md, "Atoms", SAEs and baselines on one activation store.

For every hook point the dictionaries were made for, the same token sample (BOS excluded by default) is read
from the store, the AIP metric is estimated from it, and each dictionary (neurons, features, atoms) is
measured by `analysis.analyse`. Writes into `cfg.out`: `atoms.json` (the `table` of rows, the definition of
every column, the metric of each hook and the full labelled details), `atoms.md` (the table in the paper's
form) and the plots of `plots.py`.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from saelab.atoms.analysis import DEFINITIONS, DictionaryReport, analyse, layer_of
from saelab.atoms.config import AtomsConfig
from saelab.atoms.dictionary import Dictionary, load_dictionary, neurons
from saelab.atoms.metric import pair_angles
from saelab.atoms.report import markdown_table
from saelab.atoms.uniqueness import DEFINITIONS as U_DEFS
from saelab.runtime.progress import progress_bar
from saelab.store import ActivationStore
from saelab.whitening import Metric, metric_from_activations

PAPER = {
    "source": "Hu et al., arXiv 2509.20784 (Gemma2-2B/9B, Llama3.1-8B, dictionary 4 x d_model)",
    "r2_atoms": 0.999,
    "q_star_atoms": 0.998,
    "q_star_features": 0.682,
    "r2_features": 0.488,
    "q_star_neurons": 0.005,
    "r2_neurons": 1.0,
}


def run(cfg: AtomsConfig) -> dict[str, Any]:
    """Analyse every dictionary on its hook, write the outputs into cfg.out, return the atoms.json content."""
    t0 = time.perf_counter()
    store = ActivationStore(cfg.store)
    groups = _dictionaries_by_hook(cfg, store)
    idx = _sample_tokens(store, cfg)
    reports: list[DictionaryReport] = []
    metrics: dict[str, dict[str, Any]] = {}
    angles: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    n_dict = sum(len(v) for v in groups.values())
    with progress_bar("dict", cfg.progress) as bar:
        task = bar.add_task("atoms", total=n_dict, info="")
        for hook, dics in groups.items():
            bar.update(task, info=f"{hook}: reading {len(idx):,} tokens")
            X = store.activations(hook).take(idx, np.float32)  # (n, d)
            metric, warning = _metric(X, cfg)
            # the representation shift: angles between random token activations, Euclidean vs AIP
            angles[hook] = tuple(np.asarray(pair_angles(X, m, cfg.angle_pairs, cfg.seed)) for m in (None, metric))
            metrics[hook] = _metric_summary(metric, warning, angles[hook])._asdict()
            for dic in dics:
                bar.update(task, info=f"{hook}: {dic.name}")
                reports.append(analyse(dic, X, metric, cfg, hook))
                bar.advance(task)
    result = _result(cfg, store, reports, metrics, len(idx), time.perf_counter() - t0)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "atoms.json").write_text(_dumps(result))
    (cfg.out / "atoms.md").write_text(markdown_table(result))
    if cfg.plots:
        from saelab.atoms.plots import write_plots

        result["plots"] = [str(p) for p in write_plots(reports, cfg.out / "plots", angles)]
        (cfg.out / "atoms.json").write_text(_dumps(result))
    return result


def _dictionaries_by_hook(cfg: AtomsConfig, store: ActivationStore) -> dict[str, list[Dictionary]]:
    """hook -> [neurons?, SAE dictionaries...], hooks in layer order; checks hooks and widths."""
    dics = [load_dictionary(p) for p in cfg.sae]
    for b in cfg.baselines:
        if b != "neurons":
            label, _, path = b.rpartition("=")
            dics.append(load_dictionary(path, label or None))
    groups: dict[str, list[Dictionary]] = {}
    for d in dics:
        hook = d.hook or cfg.hook or (store.hooks[0] if len(store.hooks) == 1 else None)
        if hook is None:
            raise ValueError(f"SAE {d.source} names no hook and store {cfg.store} holds {store.hooks}; set hook")
        if hook not in store.hooks:
            raise ValueError(f"SAE {d.source} is for {hook}, which store {cfg.store} lacks (it holds {store.hooks})")
        if d.D.shape[1] != store.d_model:
            raise ValueError(f"SAE {d.source} has d_in {d.D.shape[1]}, store {cfg.store} d_model {store.d_model}")
        groups.setdefault(hook, []).append(d)
    order = sorted(groups, key=lambda h: (layer_of(h) is None, layer_of(h) or 0, h))
    out = {}
    for h in order:
        base = [neurons(store.d_model, h)] if "neurons" in cfg.baselines else []
        # neurons first, then features, then atoms, each by size: the order of the paper's table
        rank = {"neurons": 0, "features": 1, "atoms": 2}
        out[h] = base + sorted(groups[h], key=lambda d: (rank[d.kind], d.m, d.name))
    return out


def _sample_tokens(store: ActivationStore, cfg: AtomsConfig) -> np.ndarray:
    pool = np.flatnonzero(np.asarray(store.pos) >= cfg.min_position)  # global token indices
    if len(pool) <= cfg.tokens:
        return pool
    rng = np.random.default_rng(cfg.seed)
    return np.sort(rng.choice(pool, cfg.tokens, replace=False))


def _metric(X: np.ndarray, cfg: AtomsConfig) -> tuple[Metric, str | None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metric = metric_from_activations(X, centred=cfg.centred, max_cond=cfg.max_cond)
    for w in caught:
        warnings.warn(w.message, stacklevel=2)
    return metric, (str(caught[0].message) if caught else None)


class MetricSummary(NamedTuple):
    """One hook's AIP metric as atoms.json reports it, with the representation shift it makes."""

    activation_angle_dev90_euclidean: float  # median |angle - 90 deg| between random activation pairs
    activation_angle_dev90_aip: float  # the same in the AIP metric
    activation_angle_definition: str
    definition: str  # how S was estimated
    cond: float
    ridge: float
    centred: bool
    n: int  # activations it was estimated from
    warning: str | None  # the estimate's warning (an ill-conditioned covariance), if any


def _metric_summary(metric: Metric, warning: str | None, angles: tuple[np.ndarray, np.ndarray]) -> MetricSummary:
    dev = [float(np.median(np.abs(a - 90.0))) for a in angles]
    return MetricSummary(
        dev[0],
        dev[1],
        "median |angle - 90 deg| between random pairs of analysed activations",
        "S = (Cov[h] + ridge I)^-1" if metric.centred else "S = (E[h h^T] + ridge I)^-1",
        metric.cond,
        metric.ridge,
        metric.centred,
        metric.n,
        warning,
    )


def _result(
    cfg: AtomsConfig,
    store: ActivationStore,
    reports: list[DictionaryReport],
    metrics: dict,
    n: int,
    secs: float,
) -> dict[str, Any]:
    definitions = dict(DEFINITIONS)
    definitions["uniqueness"] = f"per-atom ({cfg.atom_definition}): {U_DEFS[cfg.atom_definition]}; AIP metric"
    return {
        "table": [r.row() for r in reports],
        "definitions": definitions,
        "metric": metrics,
        "details": {f"{r.hook} | {r.name}": r.details() for r in reports},
        "seconds": {f"{r.hook} | {r.name}": r.seconds for r in reports} | {"total": secs},
        "store": {
            "path": str(cfg.store),
            "model": store.meta.get("model"),
            "corpus": store.meta.get("corpus"),
            "n_tokens": store.n_tokens,
        },
        "tokens_analysed": n,
        "paper": PAPER,
        "config": cfg.model_dump(mode="json"),
    }


def _dumps(result: dict[str, Any]) -> str:
    """Strict JSON: NaN and infinities (an undefined R^2, an infinite condition number) become null."""
    return json.dumps(_finite(result), indent=2, default=_jsonable, allow_nan=False)


def _finite(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    if isinstance(o, float | np.floating) and not np.isfinite(o):
        return None
    return o


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return float(o)
