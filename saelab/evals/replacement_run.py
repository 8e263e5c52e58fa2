"""`saelab eval` of a replacement model: given a multi-SAE run of transcoders (e.g. `[each_layer]`'s one per
layer), every transcoder is spliced in at once (`saelab.evals.replacement`); per-layer EV and L0, and the
replacement model's CE loss recovered and KL against the clean model, with and without error terms. JSON plus
a markdown table beside the run."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from saelab.data import open_corpus
from saelab.evals import metrics
from saelab.evals.batches import token_batches
from saelab.evals.config import EvalConfig
from saelab.evals.replacement import ReplacementSums, finish, make_replacement_fn, plt_replacement
from saelab.models import Model
from saelab.models.hooks import hook_layer
from saelab.runtime.distributed import is_main
from saelab.runtime.progress import progress_bar
from saelab.runtime.rundir import RunDir
from saelab.sae import LoadedSAE, load_sae

LAYER_KEYS = ("explained_variance", "l0", "dead_fraction", "dense_fraction", "nmse", "cosine", "shrinkage")


def transcoder_set(root: str | Path) -> dict[str, LoadedSAE]:
    """The transcoders of a multi-SAE run (its sub-runs), by name, in the order of the layers they write."""
    runs = [p for p in sorted(Path(root).iterdir()) if RunDir(p).is_run()]
    if not runs:
        raise ValueError(f"{root} holds no finished sub-run to evaluate")
    saes = {p.name: load_sae(p) for p in runs}
    return dict(sorted(saes.items(), key=lambda kv: (hook_layer(kv[1].metadata.get("hook_name_out") or ""), kv[0])))


def run(cfg: EvalConfig, model: Model | None = None) -> dict[str, Any]:
    """Evaluate the replacement model of the transcoder set `cfg.sae` (a multi-SAE run directory); writes the
    JSON and its markdown table and returns the JSON's content."""
    t0 = time.perf_counter()
    saes = transcoder_set(cfg.sae)
    rep = plt_replacement(list(saes.values()))
    first = next(iter(saes.values()))
    model_name = cfg.model or first.metadata.get("model_name")
    model = model or Model.load(model_name, process=cfg.model_processing or "none")
    missing = [h for h in (*rep.hooks_in, *rep.hooks_out) if h not in model.hook_names()]
    if missing:
        raise ValueError(f"hooks {missing} are not hook points of {model_name}")
    fn = make_replacement_fn(model.cfg, rep)
    sums, recon, done = None, None, 0
    corpus = open_corpus(cfg.corpus, cfg.split, cfg.heldout_fraction)
    with progress_bar("tok/s", cfg.progress) as bar:
        task = bar.add_task(f"eval replacement model ({len(saes)} transcoders)", total=cfg.tokens, info=cfg.corpus)
        for tokens in token_batches(corpus, model, cfg.context, cfg.batch, cfg.tokens):
            s, r = fn(model.params, rep.params, tokens)
            s = [np.asarray(v, np.float64) for v in s]
            sums = s if sums is None else [a + b for a, b in zip(sums, s, strict=True)]
            recon = list(r) if recon is None else [metrics.add(a, b) for a, b in zip(recon, r, strict=True)]
            done += tokens.size
            bar.update(task, completed=min(done, cfg.tokens))
    if sums is None:
        raise ValueError(f"corpus {cfg.corpus!r} ({cfg.split} split) yielded no text to evaluate on")
    layers = [_layer(name, sae, r, cfg.dense_threshold) for (name, sae), r in zip(saes.items(), recon, strict=True)]
    mean = lambda key: float(np.mean([row[key] for row in layers]))
    result = {
        **{key: mean(key) for key in ("explained_variance", "l0", "dead_fraction")},  # means over the layers
        **finish(ReplacementSums(*sums)),
        "layers": layers,
        "meta": {
            "transcoders": str(cfg.sae),
            "model": model_name,
            "n_transcoders": len(saes),
            "corpus": cfg.corpus,
            "split": cfg.split,
            "tokens_evaluated": done,
            "context": cfg.context,
            "bos_excluded": True,
            "seconds": round(time.perf_counter() - t0, 2),
        },
    }
    out = cfg.out or RunDir(cfg.sae).eval_result(f"replacement-{re.sub(r'[^A-Za-z0-9]+', '-', cfg.corpus).strip('-')}")
    result["meta"] |= {"out": str(out), "report": str(out.with_suffix(".md"))}
    if is_main():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        out.with_suffix(".md").write_text(report(result))
    return result


def _layer(name: str, sae: LoadedSAE, sums: metrics.Sums, dense_threshold: float) -> dict[str, Any]:
    """One transcoder's row: where it reads and writes, and its reconstruction metrics from the clean inputs."""
    m = metrics.finish(sums, dense_threshold)._asdict()
    hooks = {"hook": sae.metadata["hook_name"], "hook_out": sae.metadata["hook_name_out"]}
    return {"name": name, **hooks, "d_sae": sae.cfg.d_sae, **{k: float(m[k]) for k in LAYER_KEYS}}


def report(result: dict[str, Any]) -> str:
    """The markdown of a replacement-model eval: the whole model's numbers, then one row per layer."""
    r, meta = result, result["meta"]
    lines = [
        f"# Replacement model: {meta['transcoders']} ({meta['n_transcoders']} transcoders in {meta['model']})",
        "",
        f"{meta['tokens_evaluated']} tokens of {meta['corpus']} ({meta['split']} split), context {meta['context']}.",
        "",
        "| | CE loss | CE loss recovered | KL to clean |",
        "|---|---|---|---|",
        f"| clean | {r['ce_loss_clean']:.4f} | | |",
        f"| replacement | {r['ce_loss_replacement']:.4f} | {r['ce_loss_recovered']:.4f} | {r['kl_div']:.4f} |",
        f"| with error terms | {r['ce_loss_replacement_with_errors']:.4f} | {r['ce_loss_recovered_with_errors']:.4f} "
        f"| {r['kl_div_with_errors']:.2e} |",
        f"| every MLP zero-ablated | {r['ce_loss_zero_ablation']:.4f} | 0 | {r['kl_div_zero_ablation']:.4f} |",
        "",
        "| transcoder | reads | writes | EV | L0 | dead |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["layers"]:
        lines.append(
            f"| {row['name']} | {row['hook']} | {row['hook_out']} | {row['explained_variance']:.4f} "
            f"| {row['l0']:.1f} | {row['dead_fraction']:.4f} |"
        )
    return "\n".join(lines) + "\n"
