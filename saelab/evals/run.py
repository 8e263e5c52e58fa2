"""`run(cfg)`: evaluate one SAE on held-out text: reconstruction, sparsity, CE loss recovered, KL, decoder
geometry; JSON plus a markdown report with plots."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from saelab.data import open_corpus
from saelab.evals import metrics, replacement_run, splice
from saelab.evals.batches import add_batch, mean_activation, splice_fn, token_batches
from saelab.evals.config import EvalConfig
from saelab.evals.report import write_report
from saelab.evals.transcoder import transcoder_splice_fn
from saelab.models import Model
from saelab.models.hook_views import hook_width
from saelab.models.hooks import hook_layer
from saelab.runtime.config import did_you_mean
from saelab.runtime.distributed import is_main
from saelab.runtime.progress import progress_bar
from saelab.runtime.rundir import RunDir
from saelab.sae import LoadedSAE, load_sae


def run(cfg: EvalConfig, model: Model | None = None) -> dict[str, Any] | None:
    """Evaluate `cfg.sae` (a multi-SAE run of transcoders: their replacement model, `saelab.evals.replacement_run`);
    writes the JSON, the report and its plots and returns the JSON's content (None when `skip_missing` skipped an
    absent corpus file). `model` replaces loading the model by name (tests pass a
    cut-down model)."""
    t0 = time.perf_counter()
    kind, _, rest = cfg.corpus.partition(":")
    if cfg.skip_missing and kind in ("text", "jsonl") and not Path(rest.split(":")[0]).exists():
        print(f"eval skipped: corpus file {rest.split(':')[0]} is absent")
        return None
    if replacement_run.is_transcoder_set(cfg.sae):  # the replacement model, every transcoder spliced in at once
        return replacement_run.run(cfg, model)
    t = _target(cfg, model)
    out = cfg.out or _default_out(cfg)
    sums, done = _sums(cfg, t)
    result = {**sums, "max_decoder_cosine": _decoder_cosines(t.sae), "meta": _meta(cfg, t, done, t0)}
    result["meta"] |= {"out": str(out), "report": str(out.with_suffix(".md"))}
    if is_main():  # in a multi-process run every process computes the same sums
        out.parent.mkdir(parents=True, exist_ok=True)
        write_report(result, out)
        out.write_text(json.dumps(result, indent=2))
    return result


class _Target(NamedTuple):
    """What an eval splices where: the SAE, the model and its name, the hook (and head), a transcoder's
    output hook, the model's processing."""

    sae: LoadedSAE
    model: Model
    model_name: str
    hook: str
    head: int | None
    hook_out: str | None
    processing: str


def _target(cfg: EvalConfig, model: Model | None) -> _Target:
    """Load the SAE and the model it reads (unless given) and check the hook exists and has the SAE's width."""
    sae = load_sae(cfg.sae)
    hook = cfg.hook or sae.metadata.get("hook_name")
    model_name = cfg.model or sae.metadata.get("model_name")
    if not hook or not model_name:
        raise ValueError(
            f"SAE {cfg.sae} does not name its {'hook' if not hook else 'model'}; pass it "
            f"({'--hook' if not hook else '--model'})"
        )
    head = cfg.hook_head_index if cfg.hook_head_index is not None else _sae_head_index(sae, hook)
    hook_out = transcoder_output_hook(sae)
    if hook_out is not None and head is not None:
        raise ValueError("a transcoder reads a whole hook; hook_head_index does not apply to it")
    processing = cfg.model_processing or sae.metadata.get("model_processing") or "none"
    model = model or Model.load(model_name, process=processing)
    for h in (hook, hook_out) if hook_out else (hook,):
        if h not in model.hook_names():
            hint = did_you_mean(h, model.hook_names())
            raise ValueError(f"hook {h!r} is not a hook point of {model_name}{hint} (`saelab model info {model_name}`)")
    width = hook_width(model.cfg, hook, head)
    if width != sae.cfg.d_in:
        at = f"{hook}" + (f" head {head}" if head is not None else "")
        raise ValueError(
            f"SAE {cfg.sae} has d_in={sae.cfg.d_in} but {model_name} is {width} wide at {at}; "
            "evaluate it with the model it was trained on (--model) at its own hook (--hook, --hook-head-index)"
        )
    return _Target(sae, model, model_name, hook, head, hook_out, processing)


def _sums(cfg: EvalConfig, t: _Target) -> tuple[dict[str, Any], int]:
    """(the reconstruction and splice metrics over the corpus's held-out tokens, tokens evaluated)."""
    sae, model = t.sae, t.model
    if t.hook_out is None:
        fn = splice_fn(model.cfg, t.hook, sae.cfg, t.head)
    else:
        fn = transcoder_splice_fn(model.cfg, t.hook, t.hook_out, sae.cfg)
    act_mean = recon_sums = splice_sums = None
    done = 0
    corpus = open_corpus(cfg.corpus, cfg.split, cfg.heldout_fraction)
    with progress_bar("tok/s", cfg.progress) as bar:
        task = bar.add_task(f"eval {t.hook}", total=cfg.tokens, info=cfg.corpus)
        for tokens in token_batches(corpus, model, cfg.context, cfg.batch, cfg.tokens):
            if act_mean is None:
                act_mean = mean_activation(
                    sae.metadata.get("dataset_path"), model, t.hook_out or t.hook, tokens, t.head
                )
            splice_sums, recon_sums = add_batch(fn, model, sae.params, tokens, act_mean, splice_sums, recon_sums)
            done += tokens.size
            bar.update(task, completed=min(done, cfg.tokens))
    if recon_sums is None:
        raise ValueError(
            f"corpus {cfg.corpus!r} ({cfg.split} split) yielded no text to evaluate on; "
            "use another --split or a larger --heldout-fraction"
        )
    recon = metrics.finish(recon_sums, cfg.dense_threshold).as_json()
    return {**recon, **splice.finish(splice.SpliceSums(*splice_sums))}, done


def _decoder_cosines(sae: LoadedSAE) -> dict[str, Any]:
    """Each decoder row's largest cosine with another row: its mean, median, share above 0.9 and histogram."""
    max_cos = metrics.max_decoder_cosine(sae.params.W_dec)
    return {
        "mean": float(max_cos.mean()),
        "median": float(np.median(max_cos)),
        "fraction_above_0.9": float(np.mean(max_cos > 0.9)),
        "histogram": _hist(max_cos, 0.0, 1.0),
    }


def _meta(cfg: EvalConfig, t: _Target, done: int, t0: float) -> dict[str, Any]:
    """What was evaluated, on what, and how (the JSON's `meta`)."""
    sae = t.sae
    return {
        "sae": str(cfg.sae),
        "model": t.model_name,
        "hook": t.hook,
        "hook_head_index": t.head,
        "hook_out": t.hook_out,  # a transcoder's output hook, spliced in place of the MLP; None for an SAE
        "model_processing": t.processing,
        "layer": hook_layer(t.hook),
        "architecture": sae.cfg.architecture,
        "d_sae": sae.cfg.d_sae,
        "k": getattr(sae.cfg, "k", None),
        "corpus": cfg.corpus,
        "split": cfg.split,
        "tokens_evaluated": done,
        "context": cfg.context,
        "mean_ablation": "store mean (BOS excluded)" if sae.metadata.get("dataset_path") else "eval mean",
        "bos_excluded": True,
        "seconds": round(time.perf_counter() - t0, 2),
        "training_tokens": sae.metadata.get("training_tokens"),
        "trainer": sae.metadata.get("trainer", "saelab"),
    }


def _sae_head_index(sae: LoadedSAE, hook: str) -> int | None:
    """The SAE's own `hook_head_index`, when it is evaluated at its own hook."""
    head = sae.metadata.get("hook_head_index")
    return None if head is None or hook != sae.metadata.get("hook_name") else int(head)


def transcoder_output_hook(sae: LoadedSAE) -> str | None:
    """The hook a transcoder writes (its `hook_name_out`); None for an SAE; ValueError when a transcoder lacks it."""
    if not sae.cfg.is_transcoder:
        return None
    out = sae.metadata.get("hook_name_out")
    if not out:
        raise ValueError("this transcoder does not name its output hook (metadata hook_name_out); set it in cfg.json")
    return out


def _hist(v: np.ndarray, lo: float, hi: float, bins: int = 40) -> dict[str, list]:
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return {"counts": counts.tolist(), "edges": edges.tolist()}


def _default_out(cfg: EvalConfig) -> Path:
    run = RunDir.holding(cfg.sae) or RunDir(cfg.sae)  # beside the run, whether given the run or its export
    slug = re.sub(r"[^A-Za-z0-9]+", "-", cfg.corpus).strip("-")
    return run.eval_result(f"{slug}-{cfg.split}")
