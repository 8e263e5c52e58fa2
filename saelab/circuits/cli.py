"""`saelab circuits TASK --model M [--method ...] [--prompts N] --out DIR`: parse, run, print a summary; and
`saelab circuits table ROOT`: the table over many runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from saelab.runtime.cliargs import add_config_command, config_from_args
from saelab.runtime.jaxcache import add_flag as add_jax_cache_flag


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `circuits` subcommand (flags generated from CircuitsConfig, TASK positional)."""
    from saelab.circuits.config import CircuitsConfig

    parser = add_config_command(
        sub,
        "circuits",
        CircuitsConfig,
        _circuits,
        help="find a task's circuit heads from discrete SAE codes, scored against activation patching",
        description="Circuit heads from SAE codes (O'Neill & Bui), exact and attribution patching; writes "
        "circuits.json, per-method layer x head heat maps and ROC curves into --out.",
        positional="task",
    )
    add_jax_cache_flag(parser)

    t = sub.add_parser(
        "circuits table",
        help="the protocol's table: AUC mean +- std per task and method over the seeds of many circuits runs",
    )
    t.add_argument("root", type=Path, help="folder holding the runs' circuits.json files (searched recursively)")
    t.add_argument("--out", type=Path, help="also write the table here (markdown)")
    t.set_defaults(fn=_table)


def _circuits(a: argparse.Namespace) -> None:
    from saelab.circuits.config import CircuitsConfig
    from saelab.circuits.run import run

    cfg = config_from_args(CircuitsConfig, a)
    print(summary(run(cfg)))
    print(f"results: {cfg.out / 'circuits.json'}")


def _table(a: argparse.Namespace) -> None:
    from saelab.circuits.table import write_table

    print(write_table(a.root, a.out))


def summary(result: dict[str, Any]) -> str:
    """A few lines for the terminal: task baselines, ground truth, AUC and runtime per method."""
    t = result["task"]
    lines = [
        f"{t['name']}: {t['pairs']} pairs, accuracy {t['accuracy']:.2f}"
        f" (negatives {t['negative_accuracy']:.2f}), metric {t['metric']} {t['pos_baseline']:.3f}"
        f" vs {t['neg_baseline']:.3f} on negatives"
    ]
    if "ground_truth" in result:
        g = result["ground_truth"]
        lines.append(f"ground truth ({g['source']}, {g['rule']}): {g['n_heads']} heads")
    auc, runtime = result.get("auc", {}), result["runtime_s"]
    for name in sorted(set(auc) | set(runtime) | set(result["scores"])):
        a = f"AUC {auc[name]:.3f}" if name in auc else "AUC    -  "
        r = f"{runtime[name]:8.1f} s" if name in runtime else ""
        lines.append(f"  {name:16s} {a}  {r}")
    if "speedup_vs_patching" in result:
        lines.append(f"sae-codes is {result['speedup_vs_patching']:.0f}x faster than exact patching")
    if "stability" in result:
        s = result["stability"]["sae-codes"]
        lines.append(
            f"sae-codes AUC over {len(s['auc'])} draws of SAE prompts: {s['mean']:.3f} +- {s['std']:.3f}"
            f" (min {s['min']:.3f}, max {s['max']:.3f})"
        )
    return "\n".join(lines)
