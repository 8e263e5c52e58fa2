"""`saelab select downstream`: select for one CLINC150 domain or intent by several methods, fine-tune the model
on each selection with the same budget (saelab.select.finetune), and compare the loss on the label's
held-out test utterances: the paper's real criterion, at CPU scale."""

from __future__ import annotations

import json
import time

import numpy as np

from saelab.select.config import DownstreamConfig, SelectConfig
from saelab.select.finetune import finetune_and_eval, freeze_inputs
from saelab.select.run import run as select_run

__all__ = ["DownstreamConfig", "run_downstream"]

SELECTION_FIELDS = {"ratio", "model", "sae", "idf", "seed", "progress"}
"""Fields of a DownstreamConfig that each method's selection (a SelectConfig) takes as they are."""


def run_downstream(cfg: DownstreamConfig) -> dict:
    """Select, fine-tune and evaluate for every method; writes and returns the results."""
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
    rng = np.random.default_rng(cfg.seed)
    targets = [cands[i] for i in rng.permutation(len(cands))[: cfg.n_target]]
    held_out = [r["text"] for r in recs["test"] if r[cfg.level] == cfg.label]
    cfg.out.mkdir(parents=True, exist_ok=True)
    target_path = cfg.out / "target.jsonl"
    target_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in targets))

    model = Model.load(cfg.model)
    first = model.cfg.n_layers - cfg.train_layers
    held = freeze_inputs(model, held_out, first, cfg.seq)
    results = {}
    for method in cfg.methods:
        sel_dir = cfg.out / method
        shared = cfg.model_dump(include=SELECTION_FIELDS)
        sc = SelectConfig(pool=pool, target=target_path, method=method, out=sel_dir, overwrite=True, **shared)
        summary = select_run(sc, model=model)
        lines = (sel_dir / "scores.tsv").read_text().splitlines()[1:]
        chosen = [int(x.split("\t")[0]) - 1 for x in lines if x.endswith("\t1")]
        texts = [json.loads(x)["text"] for x in (sel_dir / "selected.jsonl").read_text().splitlines()]
        t0 = time.perf_counter()
        train = freeze_inputs(model, texts, first, cfg.seq)
        r = finetune_and_eval(model, train, held, first, cfg.steps, cfg.batch, cfg.lr, cfg.seed, cfg.progress)
        results[method] = {
            "n_selected": summary["n_selected"],
            "label_precision": float(np.mean([labels[i] == cfg.label for i in chosen])),
            **r._asdict(),
            "finetune_seconds": round(time.perf_counter() - t0, 1),
        }
        print(
            f"{method}: precision {results[method]['label_precision']:.3f}, held-out loss "
            f"{r.eval_loss_before:.4f} -> {r.eval_loss_after:.4f}",
            flush=True,
        )
    out = {
        "config": cfg.model_dump(mode="json"),
        "n_held_out": len(held_out),
        "first_trained_block": first,
        "results": results,
    }
    (cfg.out / "downstream.json").write_text(json.dumps(out, indent=2))
    return out
