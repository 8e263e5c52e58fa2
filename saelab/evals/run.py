"""`run(cfg)`: evaluate one SAE on held-out text: reconstruction, sparsity, CE loss recovered, KL, decoder
geometry; JSON plus a markdown report with plots."""

from __future__ import annotations

import functools
import json
import re
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saelab.data import open_corpus, pack_for_model
from saelab.evals import metrics, splice
from saelab.evals.config import EvalConfig
from saelab.evals.report import write_report
from saelab.evals.transcoder import transcoder_splice_fn
from saelab.models import Model
from saelab.models.hook_views import hook_width, row_view, sae_input
from saelab.models.hooks import hook_layer
from saelab.runtime.config import did_you_mean
from saelab.runtime.distributed import is_main
from saelab.runtime.progress import progress_bar
from saelab.runtime.rundir import RunDir
from saelab.sae import LoadedSAE, decode, encode, load_sae


def run(cfg: EvalConfig, model: Model | None = None) -> dict[str, Any] | None:
    """Evaluate `cfg.sae`; writes the JSON, the report and its plots and returns the JSON's content (None when
    `skip_missing` skipped an absent corpus file). `model` replaces loading the model by name (tests pass a
    cut-down model)."""
    t0 = time.perf_counter()
    kind, _, rest = cfg.corpus.partition(":")
    if cfg.skip_missing and kind in ("text", "jsonl") and not Path(rest.split(":")[0]).exists():
        print(f"eval skipped: corpus file {rest.split(':')[0]} is absent")
        return None
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
    out = cfg.out or _default_out(cfg)
    fn = (
        splice_fn(model.cfg, hook, sae.cfg, head)
        if hook_out is None
        else transcoder_splice_fn(model.cfg, hook, hook_out, sae.cfg)
    )
    act_mean = None
    recon_sums = splice_sums = None
    done = 0
    corpus = open_corpus(cfg.corpus, cfg.split, cfg.heldout_fraction)
    with progress_bar("tok/s", cfg.progress) as bar:
        task = bar.add_task(f"eval {hook}", total=cfg.tokens, info=cfg.corpus)
        for tokens in token_batches(corpus, model, cfg.context, cfg.batch, cfg.tokens):
            if act_mean is None:
                act_mean = mean_activation(sae.metadata.get("dataset_path"), model, hook_out or hook, tokens, head)
            splice_sums, recon_sums = add_batch(fn, model, sae.params, tokens, act_mean, splice_sums, recon_sums)
            done += tokens.size
            bar.update(task, completed=min(done, cfg.tokens))
    if recon_sums is None:
        raise ValueError(
            f"corpus {cfg.corpus!r} ({cfg.split} split) yielded no text to evaluate on; "
            "use another --split or a larger --heldout-fraction"
        )
    max_cos = metrics.max_decoder_cosine(sae.params.W_dec)
    result = {
        **metrics.finish(recon_sums, cfg.dense_threshold),
        **splice.finish(splice.SpliceSums(*splice_sums)),
        "max_decoder_cosine": {
            "mean": float(max_cos.mean()),
            "median": float(np.median(max_cos)),
            "fraction_above_0.9": float(np.mean(max_cos > 0.9)),
            "histogram": _hist(max_cos, 0.0, 1.0),
        },
        "meta": {
            "sae": str(cfg.sae),
            "model": model_name,
            "hook": hook,
            "hook_head_index": head,
            "hook_out": hook_out,  # a transcoder's output hook, spliced in place of the MLP; None for an SAE
            "model_processing": processing,
            "layer": hook_layer(hook),
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
        },
    }
    result["meta"] |= {"out": str(out), "report": str(out.with_suffix(".md"))}
    if is_main():  # in a multi-process run every process computes the same sums
        out.parent.mkdir(parents=True, exist_ok=True)
        write_report(result, out)
        out.write_text(json.dumps(result, indent=2))
    return result


def token_batches(corpus, model: Model, context: int, batch: int, tokens: int):
    """The eval's batches (batch, context) of token ids: whole batches until `tokens` are reached (a short last
    batch only when it is the first), the same for `saelab eval` and the trainer's in-training evals."""
    done = 0
    for b in pack_for_model(corpus, model, context=context, batch=batch):
        if done >= tokens or (b.tokens.shape[0] < batch and done):
            break
        yield jnp.asarray(b.tokens)
        done += b.tokens.size


def add_batch(fn, model: Model, sae_params, tokens: jax.Array, act_mean: jax.Array, splice_sums, recon_sums):
    """The running (splice, reconstruction) sums with one more batch of the compiled splice `fn`."""
    s, r = fn(model.params, sae_params, tokens, act_mean)
    return _add(splice_sums, s), metrics.add(recon_sums, r)


@functools.lru_cache(maxsize=8)
def splice_fn(model_cfg, hook: str, sae_cfg, head: int | None = None):
    """One compiled splice per (model, hook, SAE config) in a process: a second eval (another corpus) reuses it."""
    enc, dec = partial(_encode, cfg=sae_cfg), partial(_decode, cfg=sae_cfg)
    return splice.make_splice_fn(model_cfg, hook, enc, dec, head_index=head)


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


def _encode(params, x, cfg):
    return encode(params, x, cfg)


def _decode(params, codes, cfg):
    return decode(params, codes)


def mean_activation(
    store_dir: str | None, model: Model, hook: str, tokens: jax.Array, head: int | None = None
) -> jax.Array:
    """Mean-ablation value (d_in,) in the SAE's view of the hook: the training store's BOS-excluded mean when
    the store is here, else this batch's."""
    from saelab.store import ActivationStore, is_store

    if store_dir and is_store(store_dir):
        stats = ActivationStore(store_dir).stats(hook)
        mean = stats.get("mean_no_bos") if stats.get("mean_no_bos") is not None else stats.get("mean")
        if mean is not None:
            return row_view(model.cfg, hook, np.asarray(mean, np.float32), head)
    _, cache = model.run_with_cache(tokens, [hook], stop_at_layer="auto")
    act = sae_input(cache[hook], head)[:, 1:]  # (b, t - 1, d_in)
    return act.reshape(-1, act.shape[-1]).astype(jnp.float32).mean(0)


def _add(a, b):
    b = [np.asarray(v, np.float64) for v in b]
    return b if a is None else [x + y for x, y in zip(a, b, strict=False)]


def _hist(v: np.ndarray, lo: float, hi: float, bins: int = 40) -> dict[str, list]:
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return {"counts": counts.tolist(), "edges": edges.tolist()}


def _default_out(cfg: EvalConfig) -> Path:
    run = RunDir.holding(cfg.sae) or RunDir(cfg.sae)  # beside the run, whether given the run or its export
    slug = re.sub(r"[^A-Za-z0-9]+", "-", cfg.corpus).strip("-")
    return run.eval_result(f"{slug}-{cfg.split}")
