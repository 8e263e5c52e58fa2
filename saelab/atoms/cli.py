"""`saelab atoms SAE_OR_RUN... --store DIR [--baselines neurons,PATH] [--out DIR]`: parses, dispatches."""

from __future__ import annotations

import argparse

from saelab.atoms.analysis import fmt


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `atoms` subcommand to the `saelab` subparsers."""
    from saelab.atoms.config import AtomsConfig
    from saelab.runtime.cliargs import add_config_command

    add_config_command(
        sub,
        "atoms",
        AtomsConfig,
        _atoms,
        help="atoms table: R^2, coherence, uniqueness, q*, RIP, LASSO recovery of SAEs vs neurons (AIP)",
        description="Measure how many SAE latents behave as atoms (Hu et al., arXiv 2509.20784): writes "
        "atoms.json, atoms.md and plots into --out.",
        positional="sae",
        metavar="SAE_OR_RUN",
        positional_help="training runs (checkpoints/NAME) or SAELens-format SAE directories",
    )


def _atoms(a: argparse.Namespace) -> int:

    from saelab.atoms.config import AtomsConfig
    from saelab.atoms.run import run
    from saelab.runtime.cliargs import config_from_args

    cfg = config_from_args(AtomsConfig, a)
    result = run(cfg)
    for row in result["table"]:
        print(
            f"{row['hook']:28s} {row['dictionary']:28s} R^2 {fmt(row['r2'])}  unique atoms "
            f"{100 * row['uniqueness']:.1f}%  unique samples {100 * row['uniqueness_samples']:.1f}%  "
            f"q* {100 * row['q_star']:.1f}%  mu {fmt(row['coherence'], 3)}  L0 {fmt(row['l0'], 4)}"
        )
    print(
        f"wrote {cfg.out / 'atoms.json'}, {cfg.out / 'atoms.md'}" + (f" and {cfg.out / 'plots'}/" if cfg.plots else "")
    )
    return 0
