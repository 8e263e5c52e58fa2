"""`saelab synth generate | train | score`: parses, dispatches to saelab.synth's stage functions.

- generate: a world (preset, or a world SAELens saved) and its samples in a store, under OUT/world, OUT/store;
- train: a `saelab train` config (one SAE or a [[saes]] list) on a generated world's store, then scored;
- score: SAEs scored on a world (F1, MCC, ..., and the atoms analysis), table on stdout and in --out.
`--quick` shrinks each to a smoke test (65,536 samples or tokens, 10,000 scoring samples).
"""

from __future__ import annotations

import argparse
from pathlib import Path

QUICK_SAMPLES = 65_536
QUICK_SCORE_SAMPLES = 10_000


def register(sub: argparse._SubParsersAction) -> None:
    """Add `synth` and its subcommands to the `saelab` subparsers."""
    p = sub.add_parser("synth", help="synthetic worlds with known features (SynthSAEBench): generate, train, score")
    cmds = p.add_subparsers(dest="synth_command", required=True)

    g = cmds.add_parser("generate", help="make a world and write its samples into a store (OUT/world, OUT/store)")
    g.add_argument("--preset", choices=["small", "synth-sae-bench-16k"], default="small", help="world recipe size")
    g.add_argument("--from", dest="source", help="load this saved world (SAELens SyntheticModel.save) instead")
    g.add_argument("--samples", type=int, default=4_194_304, help="samples written into the store")
    g.add_argument("--seed", type=int, default=0, help="seed of the store's sample stream")
    g.add_argument("--out", default="activations/synth", help="directory of world/ and store/")
    g.add_argument("--overwrite", action="store_true", help="replace a store made with other settings")
    g.add_argument("--quick", action="store_true", help=f"{QUICK_SAMPLES:,} samples into OUT-quick")
    g.set_defaults(fn=_generate)

    t = cmds.add_parser("train", help="train a `saelab train` config on a generated world, then score it")
    t.add_argument("world", help="a `synth generate` output directory (holding world/ and store/)")
    t.add_argument("config", help="TOML of `saelab train` (one SAE, or several with [[saes]]); data.store is set")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override (repeatable)")
    t.add_argument("--samples", type=int, default=100_000, help="fresh scoring samples")
    t.add_argument("--overwrite", action="store_true", help="start an existing run again")
    t.add_argument(
        "--quick", action="store_true", help=f"train.tokens {QUICK_SAMPLES:,}, {QUICK_SCORE_SAMPLES:,} scoring samples"
    )
    t.set_defaults(fn=_train)

    s = cmds.add_parser("score", help="score SAEs against a world's true features (F1, MCC, ...; atoms analysis)")
    s.add_argument("world", help="a saved world directory (OUT/world of `synth generate`, or SAELens's)")
    s.add_argument("saes", nargs="+", metavar="SAE", help="training runs (checkpoints/NAME) or SAELens SAE dirs")
    s.add_argument("--samples", type=int, default=100_000, help="fresh samples per SAE")
    s.add_argument("--atoms-samples", type=int, default=4096, help="samples of the atoms analysis (0 skips it)")
    s.add_argument("--out", default=None, help="directory of scores.json / scores.md / plot (default: none)")
    s.add_argument("--quick", action="store_true", help=f"{QUICK_SCORE_SAMPLES:,} samples, 1,024 atoms samples")
    s.set_defaults(fn=_score)


def _generate(a: argparse.Namespace) -> None:
    from saelab.synth.config import SynthWorldConfig
    from saelab.synth.run import run

    out = Path(a.out + ("-quick" if a.quick else ""))
    samples = min(a.samples, QUICK_SAMPLES) if a.quick else a.samples
    cfg = SynthWorldConfig(
        world=a.preset, source=a.source, samples=samples, seed=a.seed, out=out, overwrite=a.overwrite
    )
    run(cfg)
    print(f"world: {out / 'world'}\nstore: {out / 'store'} ({samples:,} samples)")


def _train(a: argparse.Namespace) -> None:
    from saelab import train
    from saelab.sae import load_sae
    from saelab.synth.score import score
    from saelab.synth.world import load_world
    from saelab.train import multi

    world_dir = Path(a.world)
    sets = [*a.set, f"data.store={world_dir / 'store'}"]
    if a.quick:
        sets.append(f"train.tokens={QUICK_SAMPLES}")
    if multi.is_multi_config(a.config):
        result = multi.run(multi.load_multi_config(a.config, sets), overwrite=a.overwrite)
        runs = {name: r.run_dir for name, r in result.saes.items()}
    else:
        r = train.run(train.load_config(a.config, sets), overwrite=a.overwrite)
        runs = {r.run_dir.name: r.run_dir}
    world = load_world(world_dir / "world")
    n = QUICK_SCORE_SAMPLES if a.quick else a.samples
    for name, run_dir in runs.items():
        sc = score(load_sae(run_dir), world, n)
        print(f"{name} ({run_dir}): {_line(sc)}")


def _score(a: argparse.Namespace) -> None:
    from saelab.synth.config import ScoredSAE, SynthScoreConfig
    from saelab.synth.report import run

    out = Path(a.out) if a.out else Path("results") / "synth-score"
    cfg = SynthScoreConfig(
        world=a.world,
        saes=[ScoredSAE(name=Path(p).name, path=p) for p in a.saes],
        samples=QUICK_SCORE_SAMPLES if a.quick else a.samples,
        atoms_samples=min(a.atoms_samples, 1024) if a.quick else a.atoms_samples,
        out=out,
    )
    result = run(cfg)
    print((out / "scores.md").read_text())
    print(f"scores: {out / 'scores.json'}\nplot: {out / 'f1_mcc_vs_l0.png'}")
    return None if result else 1


def _line(sc) -> str:
    return (
        f"F1 {sc.f1:.3f}  MCC {sc.mcc:.3f}  uniqueness {sc.uniqueness:.3f}  EV {sc.explained_variance:.3f}  "
        f"L0 {sc.sae_l0:.1f}  dead {sc.dead_latents}/{sc.n_latents}"
    )
