"""`saelab select downstream`: select for one CLINC150 domain or intent by several methods, fine-tune the model
on each selection with the same budget (saelab.select.finetune), and compare the loss on the label's
held-out test utterances: the paper's real criterion, at CPU scale. With `seeds`, the whole comparison
(target draw, random baseline, batch order) repeats per seed and the summary gives mean and standard
deviation over seeds (population std, ddof 0, of the per-seed values)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from saelab.select.config import DownstreamConfig, SelectConfig
from saelab.select.finetune import finetune_and_eval, freeze_inputs
from saelab.select.run import run as select_run

__all__ = ["DownstreamConfig", "run_downstream", "format_summary"]

SELECTION_FIELDS = {
    "ratio",
    "model",
    "sae",
    "idf",
    "weighting",
    "code_norm",
    "prototype_latents",
    "pooling",
    "skip_tokens",
    "template",
    "aggregation",
    "top_m",
    "progress",
}
"""Fields of a DownstreamConfig that each method's selection (a SelectConfig) takes as they are."""
SUMMARY_KEYS = ("label_precision", "eval_loss_before", "eval_loss_after")


def run_downstream(cfg: DownstreamConfig) -> dict:
    """Select, fine-tune and evaluate for every method and seed; writes and returns the results."""
    from saelab.models import Model

    recs = {
        s: [json.loads(x) for x in (cfg.data / f"{s}.jsonl").read_text().splitlines() if x.strip()]
        for s in ("val", "test")
    }
    pool = cfg.data / "train.jsonl"
    labels = [json.loads(x)[cfg.level] for x in pool.read_text().splitlines() if x.strip()]
    cands = [r["text"] for r in recs["val"] if r[cfg.level] == cfg.label]
    if not cands:
        raise ValueError(f"no {cfg.level} {cfg.label!r} in {cfg.data}/val.jsonl")
    held_out = [r["text"] for r in recs["test"] if r[cfg.level] == cfg.label]
    cfg.out.mkdir(parents=True, exist_ok=True)
    model = Model.load(cfg.model)
    first = model.cfg.n_layers - cfg.train_layers
    held = freeze_inputs(model, held_out, first, cfg.seq)
    seeds = cfg.seeds or [cfg.seed]
    per_seed = {}
    for seed in seeds:
        out = cfg.out / f"seed-{seed}" if cfg.seeds else cfg.out
        per_seed[seed] = _one_seed(cfg, seed, model, pool, labels, cands, held, first, out)
    results = per_seed[seeds[0]]
    out = {
        "config": cfg.model_dump(mode="json"),
        "n_held_out": len(held_out),
        "first_trained_block": first,
        "seeds": seeds,
        "results": results,
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "summary": _summary(per_seed, cfg.methods),
    }
    (cfg.out / "downstream.json").write_text(json.dumps(out, indent=2))
    if cfg.seeds:
        table = format_summary(out["summary"], len(seeds))
        (cfg.out / "downstream.md").write_text(table + "\n")
        print(table, flush=True)
    return out


def _one_seed(cfg, seed, model, pool, labels, cands, held, first, out: Path) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    targets = [cands[i] for i in rng.permutation(len(cands))[: cfg.n_target]]
    out.mkdir(parents=True, exist_ok=True)
    target_path = out / "target.jsonl"
    target_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in targets))
    results = {}
    for method in cfg.methods:
        sel_dir = out / method
        shared = cfg.model_dump(include=SELECTION_FIELDS)
        sc = SelectConfig(
            pool=pool, target=target_path, method=method, out=sel_dir, overwrite=True, seed=seed, **shared
        )
        summary = select_run(sc, model=model)
        lines = (sel_dir / "scores.tsv").read_text().splitlines()[1:]
        chosen = [int(x.split("\t")[0]) - 1 for x in lines if x.endswith("\t1")]
        texts = [json.loads(x)["text"] for x in (sel_dir / "selected.jsonl").read_text().splitlines()]
        t0 = time.perf_counter()
        train = freeze_inputs(model, texts, first, cfg.seq)
        r = finetune_and_eval(model, train, held, first, cfg.steps, cfg.batch, cfg.lr, seed, cfg.progress)
        results[method] = {
            "n_selected": summary["n_selected"],
            "label_precision": float(np.mean([labels[i] == cfg.label for i in chosen])),
            **r._asdict(),
            "finetune_seconds": round(time.perf_counter() - t0, 1),
        }
        print(
            f"seed {seed} {method}: precision {results[method]['label_precision']:.3f}, held-out loss "
            f"{r.eval_loss_before:.4f} -> {r.eval_loss_after:.4f}",
            flush=True,
        )
    return results


def _summary(per_seed: dict[int, dict], methods: list[str]) -> dict[str, dict[str, list[float]]]:
    """method -> key -> [mean, std] over seeds."""
    out = {}
    for m in methods:
        vals = {k: np.array([per_seed[s][m][k] for s in per_seed]) for k in SUMMARY_KEYS}
        out[m] = {k: [float(v.mean()), float(v.std())] for k, v in vals.items()}
    return out


def format_summary(summary: dict[str, dict[str, list[float]]], n_seeds: int) -> str:
    """Markdown table: method, label precision and held-out loss after fine-tuning, mean +- std over seeds."""
    lines = [
        f"| method | label precision (mean +- std, {n_seeds} seeds) | held-out loss after | before |",
        "|---|---|---|---|",
    ]
    for m, v in summary.items():
        p, b, a = (v[k] for k in SUMMARY_KEYS)
        lines.append(f"| {m} | {p[0]:.3f} +- {p[1]:.3f} | {a[0]:.4f} +- {a[1]:.4f} | {b[0]:.4f} |")
    return "\n".join(lines)
