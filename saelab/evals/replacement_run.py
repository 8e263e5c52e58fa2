"""`saelab eval` of a replacement model: given a multi-SAE run of transcoders (e.g. `[each_layer]`'s one per
layer) or a circuit-tracer folder (a CLT or a transcoder set), every transcoder is spliced in at once
(`saelab.evals.replacement`); per-layer EV and L0, and the replacement model's CE loss recovered and KL against
the clean model, with and without error terms. JSON plus a markdown table beside the run."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from saelab.data import open_corpus
from saelab.evals import metrics
from saelab.evals.batches import token_batches
from saelab.evals.config import EvalConfig
from saelab.evals.replacement import (
    Replacement,
    ReplacementSums,
    clt_replacement,
    finish,
    make_replacement_fn,
    plt_replacement,
    transcoder_set_replacement,
)
from saelab.models import Model
from saelab.models.hooks import hook_layer
from saelab.runtime.distributed import is_main
from saelab.runtime.progress import progress_bar
from saelab.runtime.rundir import RunDir
from saelab.sae import load_sae
from saelab.sae.formats import circuit_tracer

LAYER_KEYS = ("explained_variance", "l0", "dead_fraction", "dense_fraction", "nmse", "cosine", "shrinkage")


class TranscoderSet(NamedTuple):
    """What `saelab eval` splices in as a whole: the replacement and, per replaced layer, its name and width."""

    replacement: Replacement
    names: list[str]
    d_sae: list[int]
    model_name: str | None  # the model it was trained on, as its files name it
    kind: str  # "multi-SAE run", "transcoder_set" or "cross_layer_transcoder" (circuit-tracer's folders)


def is_transcoder_set(path: str | Path) -> bool:
    """Whether `saelab eval` takes `path` as a replacement model: a multi-SAE run, a circuit-tracer folder, or a
    run whose export is one (a trained CLT)."""
    return RunDir(path).is_multi() or _circuit_tracer_dir(Path(path)) is not None


def _circuit_tracer_dir(path: Path) -> Path | None:
    """The circuit-tracer folder `path` names: itself, or the export of the run it is (a CLT's); else None."""
    for p in (path, RunDir(path).sae):
        if circuit_tracer.detect(p):
            return p
    return None


def load_transcoder_set(path: str | Path) -> TranscoderSet:
    """The transcoders of a multi-SAE run (its sub-runs, in the order of the layers they write), or of a folder
    in circuit-tracer's format (a CLT or a transcoder set, reading `ln2.hook_normalized` and writing
    `hook_mlp_out` of each block), or of a run whose export is such a folder (a CLT trained by saelab)."""
    path = Path(path)
    if (ct_dir := _circuit_tracer_dir(path)) is not None:
        ct = circuit_tracer.load(ct_dir)
        n = ct.clt[1].n_layers if ct.clt else len(ct.layers)
        hooks = [
            (f"blocks.{i}.{circuit_tracer.INPUT_HOOK}", f"blocks.{i}.{circuit_tracer.OUTPUT_HOOK}") for i in range(n)
        ]
        if ct.clt:
            rep, d_sae = clt_replacement(*ct.clt, hooks), [ct.clt[1].d_sae] * n
        else:
            rep, d_sae = transcoder_set_replacement(hooks, ct.layers), [cfg.d_sae for _, cfg in ct.layers]
        return TranscoderSet(rep, [f"L{i}" for i in range(n)], d_sae, ct.metadata.get("model_name"), ct.kind)
    runs = [p for p in sorted(path.iterdir()) if RunDir(p).is_run()]
    if not runs:
        raise ValueError(f"{path} holds no finished sub-run to evaluate")
    saes = {p.name: load_sae(p) for p in runs}
    saes = dict(sorted(saes.items(), key=lambda kv: (hook_layer(kv[1].metadata.get("hook_name_out") or ""), kv[0])))
    first = next(iter(saes.values()))
    d_sae = [s.cfg.d_sae for s in saes.values()]
    return TranscoderSet(
        plt_replacement(list(saes.values())), list(saes), d_sae, first.metadata.get("model_name"), "multi-SAE run"
    )


def run(cfg: EvalConfig, model: Model | None = None) -> dict[str, Any]:
    """Evaluate the replacement model of the transcoder set `cfg.sae` (a multi-SAE run directory); writes the
    JSON and its markdown table and returns the JSON's content."""
    t0 = time.perf_counter()
    ts = load_transcoder_set(cfg.sae)
    rep = ts.replacement
    model_name = cfg.model or ts.model_name
    if not model_name:
        raise ValueError(f"{cfg.sae} does not name its model; pass it (--model)")
    model = model or Model.load(model_name, process=cfg.model_processing or "none")
    missing = [h for h in (*rep.hooks_in, *rep.hooks_out) if h not in model.hook_names()]
    if missing:
        raise ValueError(f"hooks {missing} are not hook points of {model_name}")
    fn = make_replacement_fn(model.cfg, rep)
    sums, recon, done = None, None, 0
    corpus = open_corpus(cfg.corpus, cfg.split, cfg.heldout_fraction)
    with progress_bar("tok/s", cfg.progress) as bar:
        task = bar.add_task(f"eval replacement model ({len(ts.names)} layers)", total=cfg.tokens, info=cfg.corpus)
        for tokens in token_batches(corpus, model, cfg.context, cfg.batch, cfg.tokens):
            s, r = fn(model.params, rep.params, tokens)
            s = [np.asarray(v, np.float64) for v in s]
            sums = s if sums is None else [a + b for a, b in zip(sums, s, strict=True)]
            recon = list(r) if recon is None else [metrics.add(a, b) for a, b in zip(recon, r, strict=True)]
            done += tokens.size
            bar.update(task, completed=min(done, cfg.tokens))
    if sums is None:
        raise ValueError(f"corpus {cfg.corpus!r} ({cfg.split} split) yielded no text to evaluate on")
    layers = [
        {"name": name, "hook": h_in, "hook_out": h_out, "d_sae": d}
        | {k: float(v) for k, v in metrics.finish(r, cfg.dense_threshold)._asdict().items() if k in LAYER_KEYS}
        for name, h_in, h_out, d, r in zip(ts.names, rep.hooks_in, rep.hooks_out, ts.d_sae, recon, strict=True)
    ]
    mean = lambda key: float(np.mean([row[key] for row in layers]))
    result = {
        **{key: mean(key) for key in ("explained_variance", "l0", "dead_fraction")},  # means over the layers
        **finish(ReplacementSums(*sums)),
        "layers": layers,
        "meta": {
            "transcoders": str(cfg.sae),
            "model": model_name,
            "kind": ts.kind,
            "n_layers": len(ts.names),
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


def report(result: dict[str, Any]) -> str:
    """The markdown of a replacement-model eval: the whole model's numbers, then one row per layer."""
    r, meta = result, result["meta"]
    lines = [
        f"# Replacement model: {meta['transcoders']} ({meta['kind']}, {meta['n_layers']} layers of {meta['model']})",
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
