"""The architecture table: several SAEs side by side on the SAEBench suite and autointerp, from the JSONs their
stages wrote (`saelab eval --suite ...` and `saelab autointerp`), as a markdown table and a bar plot beside it.

Stage kind `saebench-table` of `saelab run` (experiments/saebench.toml). Every autointerp score is printed with its
shuffled-explanation control (`score / control`), so a reader sees at once whether the judge told anything apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from saelab.evals.saebench.config import TableConfig, TableEntry


class Column(NamedTuple):
    header: str
    path: tuple[str, ...]  # keys into the suite JSON, or ("autointerp", scorer) for a score with its control
    digits: int = 3


COLUMNS = (
    Column("L0", ("core", "l0"), 1),
    Column("EV (saelab)", ("core", "saelab_explained_variance")),
    Column("CE loss score", ("core", "ce_loss_score")),
    Column("KL score", ("core", "kl_div_score")),
    Column("alive", ("core", "frac_alive"), 2),
    Column("absorption", ("absorption", "mean_absorption_fraction_score")),
    Column("full absorption", ("absorption", "mean_full_absorption_score")),
    Column("probing top-1", ("sparse-probing", "sae_top_1_test_accuracy")),
    Column("probing top-5", ("sparse-probing", "sae_top_5_test_accuracy")),
    Column("detection", ("autointerp", "detection")),
    Column("fuzzing", ("autointerp", "fuzzing")),
    Column("embedding", ("autointerp", "embedding")),
)
PLOTTED = ("EV (saelab)", "CE loss score", "absorption", "probing top-1", "probing top-5", "embedding")


class Row(NamedTuple):
    name: str
    architecture: str
    values: dict[str, float | None]  # column header -> value (None: not measured)
    controls: dict[str, float | None]  # autointerp column -> its shuffled control
    variant: str  # the suite's variant (sizes)


def read_row(entry: TableEntry) -> Row:
    """The table row of one SAE; a metric its suite did not run is None (printed as `-`)."""
    suite = _read(entry.suite, "suite")
    ai = _read(entry.autointerp, "autointerp") if entry.autointerp is not None else None
    values: dict[str, float | None] = {}
    controls: dict[str, float | None] = {}
    for col in COLUMNS:
        if col.path[0] == "autointerp":
            s = ai["summary"].get(col.path[1]) if ai else None
            values[col.header] = s["score"] if s else None
            controls[col.header] = s["control"] if s else None
        else:
            values[col.header] = suite.get(col.path[0], {}).get(col.path[1])
    meta = suite["meta"]
    return Row(entry.name, meta.get("architecture", "?"), values, controls, meta.get("variant", "?"))


def markdown(rows: list[Row]) -> str:
    """The table: one row per SAE; autointerp cells as `score / control`."""
    head = "| SAE | " + " | ".join(c.header for c in COLUMNS) + " |"
    rule = "| --- " * (len(COLUMNS) + 1) + "|"
    lines = [head, rule]
    for r in rows:
        cells = [_cell(r, c) for c in COLUMNS]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(cfg: TableConfig) -> Path:
    """Write the markdown table, its rows as JSON and the plot; returns the markdown path."""
    rows = [read_row(e) for e in cfg.saes]
    variants = sorted({r.variant for r in rows})
    note = f"SAEBench suite variant: {', '.join(variants)}; autointerp cells are score / shuffled control.\n\n"
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text((f"# {cfg.title}\n\n" if cfg.title else "") + note + markdown(rows))
    cfg.out.with_suffix(".json").write_text(json.dumps([r._asdict() for r in rows], indent=2))
    plot(rows, cfg.out.with_suffix(".png"), cfg.title)
    return cfg.out


def plot(rows: list[Row], out: Path, title: str = "") -> None:
    """One panel per plotted column, a bar per SAE (autointerp: the control as a dark tick)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(2.6 * len(PLOTTED), 3.4), squeeze=False)
    names = [r.name for r in rows]
    for ax, header in zip(axes[0], PLOTTED, strict=True):
        vals = [r.values[header] if r.values[header] is not None else float("nan") for r in rows]
        ax.bar(range(len(rows)), vals, color="tab:blue")
        ctrl = [r.controls.get(header) for r in rows]
        if any(c is not None for c in ctrl):
            xs = [i for i, c in enumerate(ctrl) if c is not None]
            ax.scatter(xs, [ctrl[i] for i in xs], marker="_", s=300, color="black", label="control")
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(rows)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(header, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _cell(r: Row, c: Column) -> str:
    v = r.values[c.header]
    if v is None:
        return "-"
    ctrl = r.controls.get(c.header)
    return f"{v:.{c.digits}f}" + (f" / {ctrl:.{c.digits}f}" if ctrl is not None else "")


def _read(path: Path, what: str) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"saebench-table: the {what} JSON {path} does not exist; run the stage that writes it")
    return json.loads(path.read_text())
