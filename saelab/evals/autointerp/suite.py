"""Autointerp as an evaluator of `saelab eval RUN --suite autointerp` (saelab.evals.saebench.registry):
`evaluate(ctx)` runs `run_autointerp` on the suite's SAE and `markdown(metrics)` writes its report section.

The suite's settings have no judge of their own: the judge is the local one (SmolLM2-135M-Instruct) unless
SAELAB_JUDGE_BASE_URL and SAELAB_JUDGE_MODEL name an OpenAI-compatible endpoint. Examples come from the
suite's --suite-store when given, else from the store the run was trained on.
"""

from __future__ import annotations

import os
from typing import Any

from saelab.evals.autointerp.config import AutointerpConfig
from saelab.evals.autointerp.judge import ENV_BASE_URL, ENV_MODEL, Judge
from saelab.evals.autointerp.run import run_autointerp
from saelab.evals.autointerp.scorers import Embedder
from saelab.inspect.autointerp import json_safe

QUICK = {"n_latents": 4, "n_test": 6, "tokens": 50_000}  # the --suite-quick variant


def evaluate(ctx: Any, judge: Judge | None = None, embedder: Embedder | None = None) -> dict[str, Any]:
    """Explain and score latents of the suite's SAE (`ctx`: saelab.evals.saebench.context.BenchContext):
    the summary per scorer (score, shuffled control, fraction above control), the judge, each latent's
    explanation and scores, and where the full result is (SAE/autointerp.json). `judge` and `embedder`
    replace the default ones (tests pass fakes)."""
    kind = "openai" if os.environ.get(ENV_BASE_URL) and os.environ.get(ENV_MODEL) else "local"
    store = getattr(ctx.cfg, "suite_store", None)
    cfg = AutointerpConfig(
        sae=ctx.cfg.sae,
        store=store,
        hook=ctx.hook,
        model=ctx.model_name,
        judge=kind,
        **(QUICK if ctx.quick else {}),
    )
    result = run_autointerp(cfg, judge=judge, embedder=embedder, progress=False)
    data = json_safe(result.to_json())
    return {
        "judge": data["judge"],
        "summary": data["summary"],
        "latents": data["latents"],
        "autointerp_seconds": data["seconds"],
        "result": str(cfg.out_path()),
        "variant": "quick" if ctx.quick else "full",
    }


def markdown(metrics: dict[str, Any]) -> str:
    """The report section: scores against shuffled-explanation controls, then each latent's explanation."""
    lines = [
        f"Judge {metrics['judge']}; {len(metrics['latents'])} latents; chance is 0.5 for every scorer; the control is "
        "the same scorer given another latent's explanation.",
        "",
        "| scorer | score | shuffled control | latents above control |",
        "| --- | --- | --- | --- |",
    ]
    for name, s in metrics["summary"].items():
        lines.append(f"| {name} | {_num(s['score'])} | {_num(s['control'])} | {s['above_control']:.0%} |")
    scorers = list(metrics["summary"])
    lines += ["", "| latent | explanation | " + " | ".join(scorers) + " |", "| --- | --- |" + " --- |" * len(scorers)]
    for latent, rec in metrics["latents"].items():
        cells = [f"{_num(rec['scores'][k]['score'])} ({_num(rec['scores'][k]['control'])})" for k in scorers]
        text = rec["explanation"].replace("|", "\\|") or "(none)"
        lines.append(f"| {latent} | {text} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nFull result: {metrics['result']}\n"


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"
