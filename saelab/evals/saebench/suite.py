"""`run(cfg)`: the SAEBench evaluators `cfg.suite` names, one after another on one SAE, each with its progress bar;
one JSON (a section per evaluator, with its seconds) and a markdown report beside it."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from saelab.evals.config import EvalConfig
from saelab.evals.saebench.context import BenchContext
from saelab.evals.saebench.registry import EVALUATORS, resolve_suite
from saelab.evals.saebench.sizes import resolve
from saelab.runtime.progress import progress_bar
from saelab.runtime.rundir import RunDir
from saelab.sae import load_sae
from saelab.sae.decoder_norm import decoder_norm_error
from saelab.sae.loaded import UNIT_TOLERANCE, LoadedSAE


def run(cfg: EvalConfig, model=None) -> dict[str, Any]:
    """Run the suite on `cfg.sae`; returns the JSON's content (`model` replaces loading the model by name)."""
    if not cfg.suite:
        raise ValueError("no --suite given: name evaluators, e.g. --suite core,absorption or --suite saebench")
    names = resolve_suite(cfg.suite)
    sae, decoder_norm = unit_decoder(load_sae(cfg.sae))
    hook = cfg.hook or sae.metadata.get("hook_name")
    model_name = cfg.model or sae.metadata.get("model_name")
    if not hook or not model_name:
        missing = "--hook" if not hook else "--model"
        raise ValueError(f"SAE {cfg.sae} does not name its {missing[2:]}; pass {missing}")
    out = cfg.out or default_out(cfg)
    result: dict[str, Any] = {"meta": _meta(cfg, sae, hook, model_name, names, out) | {"decoder_norm": decoder_norm}}
    variant, sizes = resolve(cfg)
    head = f"# SAEBench suite: {cfg.sae}\n\n{model_name} at {hook}; {variant} variant ({sizes.describe()})\n\n"
    sections = []
    with progress_bar("it/s", cfg.progress) as bar:
        ctx = BenchContext(cfg, sae, model_name, hook, bar, cfg.hook_head_index, model)
        for i, name in enumerate(names):
            t0 = time.perf_counter()
            ev = EVALUATORS[name]
            metrics = ev.evaluate(ctx)
            metrics["seconds"] = round(time.perf_counter() - t0, 2)
            result[name] = metrics
            result["meta"]["complete"] = i == len(names) - 1
            sections.append(f"## {name} ({metrics['seconds']:.1f} s)\n\n{ev.markdown(metrics)}")
            _write(out, result, head + "\n".join(sections))
    return result


def _write(out: Path, result: dict[str, Any], report: str) -> None:
    """The JSON and its report as they stand, written after every evaluator so a long run that stops keeps what
    it finished (`meta.complete` says whether every evaluator ran); each file is replaced whole, never half-written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, json.dumps(result, indent=2, default=float)), (out.with_suffix(".md"), report)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def unit_decoder(sae: LoadedSAE) -> tuple[LoadedSAE, str]:
    """The SAE with unit decoder rows, as SAEBench evaluates it (its loader calls SAELens's `fold_W_dec_norm`):
    absorption reads `z_i cos(W_dec[i], p)` and sparse probing ranks latents by code size, both meaningless in
    units of a row norm of 0.01. Returns it and a line for the report; an SAE that cannot fold (TopK with non-unit
    rows) is kept as is, with a warning."""
    error = decoder_norm_error(sae.params.W_dec)
    if error <= UNIT_TOLERANCE:
        return sae, "unit rows"
    try:
        return sae.fold_W_dec_norm(), f"folded into the encoder (max |row norm - 1| was {error:.3g})"
    except ValueError as e:
        warnings.warn(f"SAEBench assumes unit decoder rows: {e}", stacklevel=2)
        return sae, f"not unit (max |row norm - 1| {error:.3g}) and not foldable for {sae.cfg.architecture}: as is"


def default_out(cfg: EvalConfig) -> Path:
    """Beside the run: eval-saebench.json (eval-saebench-quick.json, eval-saebench-medium.json for those)."""
    run_dir = RunDir.holding(cfg.sae) or RunDir(cfg.sae)
    name = "quick" if cfg.suite_quick else cfg.suite_variant or "full"
    return run_dir.eval_result("saebench" if name == "full" else f"saebench-{name}")


def _meta(cfg: EvalConfig, sae, hook: str, model_name: str, names: list[str], out: Path) -> dict[str, Any]:
    return {
        "sae": str(cfg.sae),
        "model": model_name,
        "hook": hook,
        "suite": names,
        "variant": resolve(cfg)[0],
        "sizes": resolve(cfg)[1]._asdict(),
        "corpus": cfg.corpus,
        "split": cfg.split,
        "activations": str(cfg.suite_store) if cfg.suite_store else "model",
        "activation_cache": str(cfg.suite_cache) if cfg.use_suite_cache else "off",
        "probe_fit": cfg.probe_fit,
        "d_sae": sae.cfg.d_sae,
        "architecture": sae.cfg.architecture,
        "definitions": "SAEBench 0.6 (sae-bench), docs/evaluation.md",
        "out": str(out),
        "report": str(out.with_suffix(".md")),
    }
