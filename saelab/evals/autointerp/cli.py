"""Subcommand `saelab autointerp`: parse and dispatch only."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from saelab.evals.autointerp.config import AutointerpConfig
    from saelab.runtime.cliargs import add_config_command

    what = "explain latents with a judge LLM and score the explanations (detection, fuzzing, embedding) vs a control"
    add_config_command(sub, "autointerp", AutointerpConfig, _autointerp, help=what, positional="sae")


def _autointerp(a: argparse.Namespace) -> None:
    from saelab.evals.autointerp.config import AutointerpConfig
    from saelab.evals.autointerp.run import run_autointerp
    from saelab.runtime.cliargs import config_from_args

    cfg = config_from_args(AutointerpConfig, a)
    result = run_autointerp(cfg)
    print(f"{len(result.latents)} latents explained by {result.judge} in {result.seconds['total']} s")
    for name, s in result.summary().items():
        print(
            f"{name:9s} {s['score']:.3f}  shuffled-explanation control {s['control']:.3f}  "
            f"above control on {s['above_control']:.0%} of latents"
        )
    print(f"results: {cfg.out_path()}" + (f"  (shown on {result.meta['report']})" if "report" in result.meta else ""))
