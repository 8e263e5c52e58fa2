"""The `synth-score` experiment stage (and `saelab synth score`): every SAE of a list scored on one world by
the same code (`saelab.synth.score`), the atoms analysis beside it (`saelab.synth.atoms`), written as
`scores.json`, a markdown table `scores.md` and a plot `f1_mcc_vs_l0.png` (F1 and MCC against L0, one line per
group: an architecture or a trainer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saelab.sae import LoadedSAE, load_sae
from saelab.synth.atoms import ATOMS_COLUMNS, atoms_rows
from saelab.synth.config import SynthScoreConfig
from saelab.synth.score import score_all
from saelab.synth.world import load_world

SCORE_COLUMNS = ("f1", "mcc", "precision", "recall", "uniqueness", "explained_variance", "sae_l0", "dead_fraction")


def run(cfg: SynthScoreConfig) -> dict[str, Any]:
    """Score every SAE, run the atoms analysis, write the outputs; returns what scores.json holds."""
    world = load_world(cfg.world)
    saes: dict[str, LoadedSAE] = {s.name: load_sae(s.path) for s in cfg.saes}
    scores = score_all(saes, world, cfg.samples, cfg.batch, cfg.seed)
    rows = [
        {"name": s.name, "group": s.group or s.name, "path": str(s.path), **_scores(scores[s.name])} for s in cfg.saes
    ]
    truth = None
    if cfg.atoms_samples:
        truth, atoms = atoms_rows(world, saes, cfg.atoms_samples, cfg.seed + 1, cfg.atoms)
        for r in rows:
            r["atoms"] = atoms[r["name"]]
    result = {"world": world.cfg.model_dump(mode="json"), "samples": cfg.samples, "rows": rows, "truth": truth}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.md").write_text(markdown(result))
    plot(rows, out / "f1_mcc_vs_l0.png")
    tmp = out / "scores.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out / "scores.json")
    return result


def markdown(result: dict[str, Any]) -> str:
    """The scores table, and the atoms table when there is one."""
    w = result["world"]
    head = f"World: {w['num_features']} true features in d = {w['hidden_dim']} (seed {w['seed']}); "
    head += f"{result['samples']:,} fresh samples per SAE.\n\n"
    cols = ["SAE", "F1", "MCC", "precision", "recall", "uniqueness", "EV", "L0", "dead"]
    lines = [_row(cols), _row(["---"] * len(cols))]
    for r in result["rows"]:
        lines.append(_row([r["name"], *(_fmt(r[c]) for c in SCORE_COLUMNS[:-1]), f"{r['dead_latents']}"]))
    text = head + "\n".join(lines) + "\n"
    if result.get("truth"):
        cols = ["dictionary", "L0", "F1", "MCC", "AIP coherence", "unique atoms", "unique samples", "q*"]
        cols += ["LASSO precision", "LASSO recall"]
        lines = [_row(cols), _row(["---"] * len(cols))]
        t = result["truth"]
        lines.append(_row(["true features", _fmt(t["l0"]), "1", "1", *(_fmt(t[c]) for c in ATOMS_COLUMNS)]))
        for r in result["rows"]:
            a = r["atoms"]
            lines.append(
                _row([r["name"], _fmt(a["l0"]), _fmt(r["f1"]), _fmt(r["mcc"]), *(_fmt(a[c]) for c in ATOMS_COLUMNS)])
            )
        text += "\nAtoms analysis (saelab.atoms; LASSO against each dictionary's own codes, the truth's against the "
        text += "true codes):\n\n" + "\n".join(lines) + "\n"
    return text


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """F1 and MCC against L0, one marker line per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    for ax, metric in zip(axes, ("f1", "mcc"), strict=True):
        for g, rs in groups.items():
            rs = sorted(rs, key=lambda r: r["sae_l0"])
            ax.plot([r["sae_l0"] for r in rs], [r[metric] for r in rs], marker="o", label=g)
        ax.set_xlabel("L0 (SAE, on fresh samples)")
        ax.set_ylabel(metric.upper())
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _scores(sc) -> dict[str, Any]:
    d = sc._asdict()
    d["dead_fraction"] = sc.dead_fraction
    return d


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
