"""`run(AtomsPaperConfig)`: the atoms paper's regime (issue 15; docs/methods.md, "Atoms", "The paper's regime").

For each bounded set M (bounded.py) and each dictionary trained on it for `steps` steps (fit.py: JumpReLU atoms
at several |D| with a target-L0 controller, ReLU and TopK features), plus the neurons of the residual and MLP
spaces, `analysis.analyse` measures R^2 (raw and, here, whitened), per-atom uniqueness (v1), q* (v2) under the
per-sample and support readings, coherence, on M itself (in-sample, as the paper) and on held-out tokens. The
AIP metric is the paper's: S = (E[h h^T])^-1 from a separate store (or in-sample, `metric`), and every row
names the metric it used. Writes atoms-paper.json, atoms-paper.md and the phase-transition plot into cfg.out.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from saelab.atoms.analysis import DEFINITIONS, analyse
from saelab.atoms.bounded import candidate_tokens, nested_sets
from saelab.atoms.config import AtomsPaperConfig
from saelab.atoms.dictionary import Dictionary, from_params, neurons, thresholded_neurons
from saelab.atoms.fit import FitOptions, FitResult, fit
from saelab.atoms.metric import metric_from_store
from saelab.atoms.paper_report import PAPER_DEFINITIONS, markdown, phase_plot
from saelab.atoms.reconstruction import reconstruct, whitened_r2
from saelab.atoms.run import _dumps
from saelab.runtime.progress import progress_bar
from saelab.sae import JumpReLUConfig, ReLUConfig, SAEConfig, TopKConfig
from saelab.store import ActivationStore
from saelab.whitening import Metric, metric_from_activations


def run(cfg: AtomsPaperConfig) -> dict[str, Any]:
    """Train and measure every dictionary of the sweep, write the outputs into cfg.out, return the JSON."""
    t0 = time.perf_counter()
    store, held = ActivationStore(cfg.store), ActivationStore(cfg.heldout_store)
    hook = _only_hook(store)
    _same_hook(held, hook)
    sets_idx = nested_sets(candidate_tokens(store, cfg.min_position, cfg.dedupe, cfg.seed), cfg.sizes, str(cfg.store))
    held_idx = np.sort(candidate_tokens(held, cfg.min_position, cfg.dedupe, cfg.seed + 1)[: cfg.heldout_tokens])
    view = store.activations(hook)
    sets = [view.take(i, np.float32) for i in sets_idx]  # each (|M|, d)
    H = held.activations(hook).take(held_idx, np.float32)  # (n_held, d)
    separate = _separate_metric(cfg, cfg.metric_store, hook)

    rows: list[dict[str, Any]] = []
    fits: dict[str, list[FitResult]] = {}
    specs = _specs(cfg, store.d_model)
    with progress_bar("fit", cfg.progress) as bar:
        task = bar.add_task("atoms-paper", total=len(specs) + 2, info="")
        for label, sae_cfg, options, sparsity in specs:
            bar.update(task, info=f"training {label} on {len(sets)} sets")
            fits[label] = fit(sae_cfg, sets, options)
            for X, idx, res in zip(sets, sets_idx, fits[label], strict=True):
                dic = from_params(res.params, sae_cfg, hook, label)
                extra = {"fit_l0": res.l0, "fit_coefficient_scale": res.coefficient_scale, "fit_seconds": res.seconds}
                extra["sparsity"] = sparsity
                rows += _measure(cfg, dic, hook, X, H, len(idx), separate, extra)
            bar.advance(task)
        bar.update(task, info="neurons")
        for X, idx in zip(sets, sets_idx, strict=True):
            rows += _measure(cfg, neurons(store.d_model, hook), hook, X, H, len(idx), separate, {})
        bar.advance(task)
        if cfg.mlp_store is not None:
            rows += _mlp_neurons(cfg, store, sets_idx, held, held_idx)
        bar.advance(task)
    result = {
        "table": rows,
        "definitions": DEFINITIONS | PAPER_DEFINITIONS,
        "hook": hook,
        "store": str(cfg.store),
        "heldout_store": str(cfg.heldout_store),
        "heldout_tokens": len(held_idx),
        "fit": {k: [{"l0": r.l0, "coefficient_scale": r.coefficient_scale} for r in v] for k, v in fits.items()},
        "seconds": time.perf_counter() - t0,
        "config": cfg.model_dump(mode="json"),
    }
    cfg.out.mkdir(parents=True, exist_ok=True)
    if cfg.plots:
        result["plots"] = [str(phase_plot(rows, cfg.out / "plots" / "phase_transition.png", hook))]
    (cfg.out / "atoms-paper.json").write_text(_dumps(result))
    (cfg.out / "atoms-paper.md").write_text(markdown(result))
    return result


def _specs(cfg: AtomsPaperConfig, d: int) -> list[tuple[str, SAEConfig, FitOptions, str]]:
    """(label, SAE config, fit options, sparsity) of every trained dictionary: atoms at each multiplier, then
    features at their usual sparsity, then features at the atoms' ("matched")."""
    base = dict(steps=cfg.steps, batch=cfg.batch, lr=cfg.lr, init=cfg.init, seed=cfg.seed, rate=cfg.controller_rate)
    out = []
    for x in cfg.multipliers:
        sae = JumpReLUConfig(
            d_in=d,
            d_sae=x * d,
            jumprelu_init_threshold=cfg.jumprelu_init_threshold,
            bandwidth=cfg.bandwidth,
        )
        out.append((f"atoms (jumprelu, {x * d})", sae, FitOptions(target_l0=cfg.target_l0, **base), "atoms"))
    m = cfg.feature_multiplier * d
    usual = [(arch, cfg.relu_target_l0, cfg.topk_k, "usual") for arch in cfg.features]
    matched = [(arch, cfg.target_l0, max(1, round(cfg.target_l0)), "matched") for arch in cfg.matched_features]
    for arch, l0, k, sparsity in usual + matched:
        if arch == "relu":
            sae, target, at = ReLUConfig(d_in=d, d_sae=m), l0, f"L0 {l0:g}"
        else:
            sae, target, at = TopKConfig(d_in=d, d_sae=m, k=min(k, m)), None, f"k {min(k, m)}"
        label = f"features ({arch}, {m}{', ' + at + ' as the atoms' if sparsity == 'matched' else ''})"
        out.append(
            (label, sae, FitOptions(target_l0=target, **base | {"steps": cfg.feature_steps or cfg.steps}), sparsity)
        )
    return out


def _measure(
    cfg: AtomsPaperConfig,
    dic: Dictionary,
    hook: str,
    X: np.ndarray,
    H: np.ndarray,
    size: int,
    separate: tuple[Metric, str] | None,
    extra: dict[str, Any],
) -> list[dict[str, Any]]:
    """The in-sample row (on M) and the held-out row (on H) of one dictionary."""
    out = []
    for which, A in (("in-sample", X), ("held-out", H)):
        metric, source = separate or (metric_from_activations(A, max_cond=cfg.max_cond), f"in-sample ({which})")
        report = analyse(dic, A, metric, cfg, hook)
        x_hat = np.asarray(reconstruct(_encode(dic, A, cfg.block), dic.D, dic.bias))
        row = report.row() | {
            "set": which,
            "m_size": size,
            "d_over_m": dic.m / size,
            "n_analysed": len(A),
            "r2_whitened": whitened_r2(A, x_hat, metric).r2,
            "metric_source": source,
        }
        out.append(row | extra)
    return out


def _encode(dic: Dictionary, A: np.ndarray, block: int) -> np.ndarray:
    return np.concatenate([np.asarray(dic.encode(A[s : s + block])) for s in range(0, len(A), block)])


def _separate_metric(cfg: AtomsPaperConfig, path: Path | None, hook: str) -> tuple[Metric, str] | None:
    if cfg.metric == "in_sample":
        return None
    if path is None:
        raise ValueError("metric = 'separate' needs the metric store")
    ms = ActivationStore(path)
    _same_hook(ms, hook)
    metric = metric_from_store(
        ms, hook, tokens=cfg.metric_tokens, min_position=cfg.min_position, centred=cfg.centred, max_cond=cfg.max_cond
    )
    what = "Cov[h]" if cfg.centred else "E[h h^T]"
    corpus = ms.meta.get("corpus", "?")
    return metric, f"separate: {path} ({corpus}, {int(metric.n):,} tokens, S = ({what})^-1, ridge {metric.ridge:.3g})"


def _mlp_neurons(
    cfg: AtomsPaperConfig,
    store: ActivationStore,
    sets_idx: list[np.ndarray],
    held: ActivationStore,
    held_idx: np.ndarray,
) -> list[dict[str, Any]]:
    """MLP-neuron rows: the same tokens read from the mlp.hook_post stores (checked token for token)."""
    mlp, mlp_held = ActivationStore(cfg.mlp_store), ActivationStore(cfg.mlp_heldout_store)
    hook = _only_hook(mlp)
    _same_hook(mlp_held, hook)
    for a, b in ((store, mlp), (held, mlp_held)):
        if a.n_tokens > b.n_tokens or not np.array_equal(np.asarray(a.tokens), np.asarray(b.tokens)[: a.n_tokens]):
            raise ValueError(
                f"MLP store {b.path} does not hold the tokens of {a.path}; harvest both with the same corpus, "
                "split, tokens and context"
            )
    separate = _separate_metric(cfg, cfg.mlp_metric_store, hook)
    H = mlp_held.activations(hook).take(held_idx, np.float32)
    dic = thresholded_neurons(mlp.d_model, cfg.neuron_threshold, hook)
    rows = []
    for idx in sets_idx:
        rows += _measure(cfg, dic, hook, mlp.activations(hook).take(idx, np.float32), H, len(idx), separate, {})
    return rows


def _only_hook(store: ActivationStore) -> str:
    if len(store.hooks) != 1:
        raise ValueError(f"store {store.path} holds hooks {store.hooks}; atoms-paper reads stores of one hook")
    return store.hooks[0]


def _same_hook(store: ActivationStore, hook: str) -> None:
    if hook not in store.hooks:
        raise ValueError(f"store {store.path} lacks hook {hook} (it holds {store.hooks})")
