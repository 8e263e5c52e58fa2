"""The `saelab` command line: parses arguments and dispatches to the stage functions, nothing more."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int | None]

# Analyses on top of trained SAEs add their subcommands with `register(subparsers)` in their own cli module.
ANALYSIS_COMMANDS: list[str] = [
    "saelab.circuits.cli",
    "saelab.atoms.cli",
    "saelab.select.cli",
    "saelab.inspect.cli",
    "saelab.train.plan_cli",
]


def _model_info(a: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saelab.models import BLOCK_HOOKS, Model

    m = Model.load(a.model)
    info = m.info()
    if a.json:
        print(json.dumps(info | {"hook_points": m.hook_names()}, indent=2))
        return
    t = Table(title=f"model {a.model}", show_header=False)
    for k, v in info.items():
        t.add_row(k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
    t.add_row("hook points", f"blocks.{{0..{m.cfg.n_layers - 1}}}.{{{', '.join(BLOCK_HOOKS)}}}")
    Console().print(t)


def _model_generate(a: argparse.Namespace) -> None:
    from saelab.models import Model

    m = Model.load(a.model, dtype=a.dtype)
    print(a.prompt + m.generate(a.prompt, a.max_new_tokens))


def _harvest(a: argparse.Namespace) -> None:
    from saelab.runtime.cliargs import config_from_args
    from saelab.harvest import HarvestConfig, run

    path = run(config_from_args(HarvestConfig, a))
    print(f"store: {path}")


def _store_info(a: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saelab.store import store_info

    info = store_info(a.store)
    if a.json:
        print(json.dumps(info, indent=2))
        return
    t = Table(title=f"activation store {a.store}", show_header=False)
    for k, v in info.items():
        if k == "meta":
            for mk, mv in v.items():
                t.add_row(f"meta.{mk}", str(mv))
        else:
            t.add_row(k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
    Console().print(t)


def _store_verify(a: argparse.Namespace) -> int:
    from saelab.store import verify_store

    problems = verify_store(a.store, deep=a.deep)
    for p in problems:
        print(f"{a.store}/{p.file}: {p.problem}")
    sound = "all shards present and checksums match" + (", every activation finite" if a.deep else "")
    fix = "re-harvest the store with --overwrite (the same settings rebuild it)"
    print(f"{len(problems)} problem(s): {fix}" if problems else f"{a.store}: {sound}")
    return 1 if problems else 0


def _train(a: argparse.Namespace) -> None:
    from saelab import train

    if a.resume:
        if a.config or a.set:
            raise ValueError("--resume continues a run with its saved config; give no CONFIG or --set with it")
        result = train.run(train.load_run_config(a.resume), resume=True)
    else:
        result = train.run(train.load_config(a.config, a.set or []), overwrite=a.overwrite)
    m = result.metrics
    print(
        f"run {result.run_dir}: {result.steps} steps, {result.tokens_per_s:,.0f} tokens/s"
        + (f", EV {m['explained_variance']:.4f}, L0 {m['l0']:.1f}, dead {m['dead_fraction']:.4f}" if m else "")
    )
    if result.export_dir.exists():
        print(f"SAE (SAELens format): {result.export_dir}")


def _eval(a: argparse.Namespace) -> None:
    from saelab.runtime.cliargs import config_from_args
    from saelab.evals import EvalConfig, run

    r = run(config_from_args(EvalConfig, a, sae=a.sae_path))
    print(
        f"EV {r['explained_variance']:.4f}  L0 {r['l0']:.1f}  dead {r['dead_fraction']:.4f}  "
        f"CE recovered {r['ce_loss_recovered']:.4f}  KL {r['kl_div']:.4f}"
    )
    print(f"eval JSON: {r['meta']['out']}\nreport: {r['meta']['report']}")


def _run(a: argparse.Namespace) -> None:
    from saelab import experiment

    evals = []
    for stage, _ in experiment.run(a.experiment, quick=a.quick, only=a.only):
        if stage.kind == "eval" and stage.config.out is not None and stage.config.out.exists():
            evals.append(stage.config.out)
            print(f"report: {stage.config.out.with_suffix('.md')}")
        elif stage.kind == "inspect":
            print(f"dashboards: open {stage.config.out / 'index.html'} or run `saelab serve {stage.config.out}`")
    if evals:  # last line: where the (last) eval JSON is, for scripts
        print(f"eval JSON: {evals[-1]}")


def _export(a: argparse.Namespace) -> None:
    import shutil
    from pathlib import Path

    src = Path(a.run) / "sae"
    if not (src / "cfg.json").exists():
        raise FileNotFoundError(
            f"{a.run} has no finished export ({src}); finish training first (saelab train --resume {a.run})"
        )
    out = Path(a.out) if a.out else src
    if out != src:
        if out.exists() and not a.overwrite:
            raise ValueError(f"{out} exists; pass --overwrite or choose another --out")
        shutil.copytree(src, out, dirs_exist_ok=True)
    print(f"SAELens-format SAE: {out} (load with sae_lens.SAE.load_from_disk)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="saelab", description=__doc__ and "Sparse-autoencoder workbench on JAX.")
    sub = p.add_subparsers(dest="command", required=True)

    model = sub.add_parser("model", help="inspect and run a model").add_subparsers(dest="model_cmd", required=True)
    info = model.add_parser("info", help="family, sizes, parameter count and hook point names of a model")
    info.add_argument("model", help="alias (smollm2-135m), GGUF file, Hugging Face directory or hub id")
    info.add_argument("--json", action="store_true", help="print JSON, including every hook point name")
    info.set_defaults(fn=_model_info)
    gen = model.add_parser("generate", help="greedy continuation of a prompt (checks weights and tokenizer)")
    gen.add_argument("model", help="alias, GGUF file, Hugging Face directory or hub id")
    gen.add_argument("prompt", help="text to continue")
    gen.add_argument("--max-new-tokens", type=int, default=12, help="tokens to generate (default 12)")
    gen.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="compute dtype")
    gen.set_defaults(fn=_model_generate)

    from saelab.runtime.cliargs import add_config_args
    from saelab.runtime.distributed import add_flags as add_distributed_flags
    from saelab.harvest.config import HarvestConfig

    hv = sub.add_parser("harvest", help="run a model over a corpus and store hook activations (resumable)")
    add_config_args(hv, HarvestConfig)
    hv.set_defaults(fn=_harvest)
    add_distributed_flags(hv)

    store = sub.add_parser("store", help="inspect and verify activation stores").add_subparsers(
        dest="store_cmd", required=True
    )
    si = store.add_parser("info", help="tokens, hooks, d_model, dtype, shards and provenance of a store")
    si.add_argument("store", help="store directory")
    si.add_argument("--json", action="store_true", help="print JSON")
    si.set_defaults(fn=_store_info)
    sv = store.add_parser(
        "verify", help="check every shard's size and checksum (--deep: and finiteness); exits 1 naming bad shards"
    )
    sv.add_argument("store", help="store directory")
    sv.add_argument("--deep", action="store_true", help="also read every activation and name NaN/Inf rows")
    sv.set_defaults(fn=_store_verify)

    tr = sub.add_parser("train", help="train an SAE from a TOML config (see experiments/sae-*.toml)")
    tr.add_argument("config", nargs="?", help="TOML file with [data], [sae], [optim], [train] sections")
    tr.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set train.tokens=2000000 (repeatable)",
    )
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue checkpoints/<run> exactly where it stopped")
    tr.add_argument("--overwrite", action="store_true", help="start an existing run again from scratch")
    tr.set_defaults(fn=_train)
    add_distributed_flags(tr)

    ex = sub.add_parser("export", help="write a run's SAE in SAELens format (cfg.json + sae_weights.safetensors)")
    ex.add_argument("run", help="run directory, checkpoints/<name>")
    ex.add_argument("--format", choices=["saelens"], default="saelens", help="export format")
    ex.add_argument("--out", help="destination directory (default: RUN/sae)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    ex.set_defaults(fn=_export)

    from saelab.evals import EvalConfig

    ev = sub.add_parser("eval", help="evaluate an SAE on held-out text: EV, L0, dead/dense, CE recovered, KL")
    ev.add_argument("sae_path", metavar="RUN_OR_SAE_DIR", help="training run (checkpoints/NAME) or SAELens-format SAE")
    add_config_args(ev, EvalConfig, skip=("sae",))
    ev.set_defaults(fn=_eval)
    add_distributed_flags(ev)

    rn = sub.add_parser("run", help="run an experiment file's stages in order, skipping those already done")
    rn.add_argument("experiment", help="experiment TOML (see experiments/demo.toml)")
    rn.add_argument("--quick", action="store_true", help="small budgets from each stage's `quick` table (smoke test)")
    rn.add_argument("--only", action="append", metavar="STAGE", help="run only this stage id or kind (repeatable)")
    rn.set_defaults(fn=_run)
    add_distributed_flags(rn)

    for module in ANALYSIS_COMMANDS:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from saelab.runtime.distributed import initialize_from_args
    from saelab.store import StoreError

    args = build_parser().parse_args(argv)
    try:
        initialize_from_args(args)  # before any device is touched: joins a multi-host run when asked
        return int(args.fn(args) or 0)
    except (ValueError, OSError, StoreError) as e:  # OSError: FileNotFoundError, a full disk
        print(f"saelab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
