"""`saelab select` (score a pool, write the top fraction) and `saelab select bench` (CLINC150 table)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add `select` and `select bench` to the saelab command line."""
    from saelab.data.texts import CLINC150
    from saelab.runtime.cliargs import add_config_command
    from saelab.select.config import BenchConfig, DownstreamConfig, SelectConfig

    # --pool and --target are checked when it runs: `select bench` needs neither
    what = "select the pool records most like a target task, by SAE codes or a baseline"
    sel = add_config_command(sub, "select", SelectConfig, _select, help=what)
    bsub = sel.add_subparsers(dest="select_cmd", required=False)
    what = "precision/recall/AP of every method on CLINC150 intents and domains"
    add_config_command(bsub, "bench", BenchConfig, _bench, help=what)
    what = "fine-tune on each method's selection, compare held-out target loss"
    add_config_command(bsub, "downstream", DownstreamConfig, _downstream, help=what)
    what = "stream an N-record pool (built from --source) and report throughput and memory"
    scale = add_config_command(bsub, "scale", SelectConfig, _scale, help=what)
    scale.add_argument("--records", type=int, default=100_000, help="records in the generated pool (default: 100000)")
    scale.add_argument(
        "--source",
        type=str,
        default=str(CLINC150 / "train.jsonl"),
        help="JSONL whose texts are cycled to build the pool (default: the shipped CLINC150 train split)",
    )


def _select(a: argparse.Namespace) -> None:
    from saelab.runtime.cliargs import config_from_args
    from saelab.select.config import SelectConfig
    from saelab.select.run import run

    s = run(config_from_args(SelectConfig, a))
    print(json.dumps({k: v for k, v in s.items() if k != "config"}, indent=2))
    print(f"selected {s['n_selected']:,} of {s['n_pool']:,} records -> {s['config']['out']}/selected.jsonl")


def _bench(a: argparse.Namespace) -> None:
    from saelab.runtime.cliargs import config_from_args
    from saelab.select.bench import run_bench
    from saelab.select.config import BenchConfig

    cfg = config_from_args(BenchConfig, a)
    run_bench(cfg)
    print(f"bench table: {cfg.out}/bench.md")


def _downstream(a: argparse.Namespace) -> None:
    from saelab.runtime.cliargs import config_from_args
    from saelab.select.config import DownstreamConfig
    from saelab.select.downstream import run_downstream

    cfg = config_from_args(DownstreamConfig, a)
    run_downstream(cfg)
    print(f"results: {cfg.out}/downstream.json")


def _scale(a: argparse.Namespace) -> None:
    from pathlib import Path

    from saelab.runtime.cliargs import config_from_args
    from saelab.select.config import SelectConfig
    from saelab.select.scale import run_scale

    print(json.dumps(run_scale(config_from_args(SelectConfig, a), Path(a.source), a.records)._asdict(), indent=2))
