"""The `saelab` command line: parses arguments and dispatches to the stage functions, nothing more."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

Handler = Callable[[argparse.Namespace], int | None]

# The stages after eval add their commands with `register(subparsers)` in their own cli module, in the order data
# flows (`saelab --help` lists them so).
ANALYSIS_COMMANDS: list[str] = [
    "saelab.inspect.cli",
    "saelab.evals.autointerp.cli",
    "saelab.spliced.cli",
    "saelab.circuits.cli",
    "saelab.trace.cli",
    "saelab.trace.intervene_cli",
    "saelab.trace.qk_cli",
    "saelab.atoms.cli",
    "saelab.select.cli",
    "saelab.sae.cli",
    "saelab.synth.cli",
]

# Groups whose own command takes a positional argument too (`saelab train CONFIG`, `saelab inspect RUN`,
# `saelab circuits TASK`), so argparse cannot nest their subcommands: `saelab GROUP SUB ...` is parsed by the
# parser named "GROUP SUB", and any other word after GROUP stays the group command's positional argument.
SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    "train": ("plan", "export"),
    "inspect": ("serve", "feature"),
    "circuits": ("table",),
    "trace": ("intervene", "qk"),
}
# Old top-level names, still accepted: each prints its new name on stderr and runs it.
RENAMED: dict[str, tuple[str, str]] = {
    "plan": ("train", "plan"),
    "export": ("train", "export"),
    "serve": ("inspect", "serve"),
    "feature": ("inspect", "feature"),
    "steer": ("splice", "steer"),
    "explain": ("splice", "explain"),
}


class Route(NamedTuple):
    """What argparse parses (`argv`), and the line to print first when an old name was used (`note`)."""

    argv: list[str]
    note: str | None


def route(argv: Sequence[str]) -> Route:
    """Rename an old command to its new name, then join `GROUP SUB` into the one parser name that parses it."""
    argv, note = list(argv), None
    if argv and argv[0] in RENAMED:
        new = RENAMED[argv[0]]
        note = f"saelab: `saelab {argv[0]}` is now `saelab {' '.join(new)}`"
        argv = [*new, *argv[1:]]
    if len(argv) > 1 and argv[1] in SUBCOMMANDS.get(argv[0], ()):
        argv = [f"{argv[0]} {argv[1]}", *argv[2:]]
    return Route(argv, note)


def _harvest(a: argparse.Namespace) -> None:
    from saelab.harvest import HarvestConfig, run
    from saelab.runtime.cliargs import config_from_args

    path = run(config_from_args(HarvestConfig, a))
    print(f"store: {path}")


def _train(a: argparse.Namespace) -> None:
    from saelab import train
    from saelab.runtime.rundir import RunDir
    from saelab.train import multi

    if a.resume:
        if a.config or a.set:
            raise ValueError("--resume continues a run with its saved config; give no CONFIG or --set with it")
        if RunDir(a.resume).is_multi():
            return _print_multi(multi.run(multi.load_multi_run_config(a.resume), resume=True))
        result = train.run(train.load_run_config(a.resume), resume=True)
    elif multi.is_multi_config(a.config):
        return _print_multi(multi.run(multi.load_multi_config(a.config, a.set or []), overwrite=a.overwrite))
    else:
        result = train.run(train.load_config(a.config, a.set or []), overwrite=a.overwrite)
    _print_run(result)


def _print_run(result, name: str = "run") -> None:
    m = result.metrics
    print(
        f"{name} {result.run_dir}: {result.steps} steps, {result.tokens_per_s:,.0f} tokens/s"
        + (f", EV {m['explained_variance']:.4f}, L0 {m['l0']:.1f}, dead {m['dead_fraction']:.4f}" if m else "")
    )
    if result.export_dir.exists():
        ct = (result.export_dir / "config.yaml").exists()  # a CLT's export is in circuit-tracer's format
        print(f"{'CLT (circuit-tracer format)' if ct else 'SAE (SAELens format)'}: {result.export_dir}")


def _print_multi(result) -> None:
    print(f"multi-SAE run {result.run_dir}: {len(result.saes)} SAEs, {result.steps} steps")
    for name, r in result.saes.items():
        _print_run(r, f"  {name}:")


def _eval(a: argparse.Namespace) -> None:
    from saelab.evals import EvalConfig, run
    from saelab.runtime.cliargs import config_from_args

    cfg = config_from_args(EvalConfig, a)
    if cfg.suite:  # SAEBench's evaluators instead of the standard eval
        from saelab.evals.saebench import run as run_suite

        r = run_suite(cfg)
        print(f"SAEBench suite {', '.join(r['meta']['suite'])}: {r['meta']['out']}\nreport: {r['meta']['report']}")
        return
    r = run(cfg)
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
            print(
                f"dashboards: open {stage.config.out / 'index.html'} or run `saelab inspect serve {stage.config.out}`"
            )
    if evals:  # last line: where the (last) eval JSON is, for scripts
        print(f"eval JSON: {evals[-1]}")


def _export(a: argparse.Namespace) -> None:
    from saelab.train import copy_export

    out = copy_export(a.run, a.out, overwrite=a.overwrite)
    print(f"SAELens-format SAE: {out} (load with sae_lens.SAE.load_from_disk)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="saelab", description=__doc__ and "Sparse-autoencoder workbench on JAX.")
    sub = p.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        title="commands, in the order data flows (model, harvest, store, train, eval, inspect, splice, circuits, "
        "atoms, select, sae, synth)",
    )

    from saelab.harvest.config import HarvestConfig
    from saelab.models.cli import register as register_model_commands
    from saelab.runtime.cliargs import add_config_command
    from saelab.runtime.distributed import add_flags as add_distributed_flags
    from saelab.runtime.hugepages import add_flag as add_hugepages_flag
    from saelab.runtime.jaxcache import add_flag as add_jax_cache_flag
    from saelab.store.cli import register as register_store_commands

    rn = sub.add_parser("run", help="run an experiment file's stages in order, skipping those already done")
    rn.add_argument("experiment", help="experiment TOML (see experiments/demo.toml)")
    rn.add_argument("--quick", action="store_true", help="small budgets from each stage's `quick` table (smoke test)")
    rn.add_argument(
        "--only",
        action="append",
        metavar="STAGE",
        help="run only this stage (its id, its table id for every sweep position, or its kind; repeatable)",
    )
    rn.set_defaults(fn=_run)
    add_distributed_flags(rn)
    add_jax_cache_flag(rn)
    register_model_commands(sub)
    what = "run a model over a corpus and store hook activations (resumable)"
    add_distributed_flags(add_config_command(sub, "harvest", HarvestConfig, _harvest, help=what))
    register_store_commands(sub)

    tr = sub.add_parser(
        "train",
        help="train an SAE, or several in one run, from a TOML config (see experiments/sae-*.toml)",
        epilog="also: `saelab train plan CONFIG` (memory per device before launching) and `saelab train export RUN` "
        "(the run's SAE in SAELens format); `--help` after each says more",
    )
    tr.add_argument(
        "config",
        nargs="?",
        help="TOML file with [data], [sae], [optim], [train] sections (and a [[saes]] list: several SAEs, one run)",
    )
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
    add_hugepages_flag(tr)

    from saelab.train.plan_cli import register as register_plan_command

    register_plan_command(sub)
    ex = sub.add_parser("train export", help="write a run's SAE in SAELens format (cfg.json + sae_weights.safetensors)")
    ex.add_argument("run", help="run directory, checkpoints/<name>")
    ex.add_argument("--format", choices=["saelens"], default="saelens", help="export format")
    ex.add_argument("--out", help="destination directory (default: RUN/sae)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    ex.set_defaults(fn=_export)

    from saelab.evals import EvalConfig

    what = "evaluate an SAE on held-out text: EV, L0, dead/dense, CE recovered, KL"
    ev = add_config_command(sub, "eval", EvalConfig, _eval, help=what, positional="sae", metavar="RUN_OR_SAE_DIR")
    add_distributed_flags(ev)
    ev.add_argument("--quick", dest="suite_quick", action="store_true", help="the --suite's quick variant")

    for module in ANALYSIS_COMMANDS:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from saelab.runtime.distributed import initialize_from_args
    from saelab.runtime.jaxcache import enable_from_args as enable_jax_cache
    from saelab.store import StoreError

    argv, note = route(sys.argv[1:] if argv is None else argv)
    if note:
        print(note, file=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        initialize_from_args(args)  # before any device is touched: joins a multi-host run when asked
        enable_jax_cache(args)  # process-wide: only with --jax-cache or $SAELAB_JAX_CACHE
        return int(args.fn(args) or 0)
    except (ValueError, OSError, StoreError) as e:  # OSError: FileNotFoundError, a full disk
        print(f"saelab: error: {e}", file=sys.stderr)
        return 2


def entry() -> int:
    """The console script: `main` on this process's arguments; under huge pages when asked (`--hugepages` or
    SAELAB_HUGEPAGES=1) and the machine offers them (`saelab.runtime.hugepages`)."""
    from saelab.runtime.hugepages import asked, reexec_with_hugepages

    reexec_with_hugepages(asked(sys.argv[1:]))
    return main()


if __name__ == "__main__":
    sys.exit(entry())
