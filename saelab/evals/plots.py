"""Comparison plots across eval JSONs: a metric against depth (layer sweeps) or a frontier (L0 against CE
loss recovered), one line per series, plus the same numbers as a markdown table."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from saelab.evals.config import PlotConfig


def run(cfg: PlotConfig) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for f in cfg.inputs:
        if not f.exists():
            raise FileNotFoundError(f"plot input {f} does not exist; run the eval stage that writes it first")
        rows.append((f, json.loads(f.read_text())))
    lines: dict[Any, list[tuple[float, dict]]] = defaultdict(list)
    for _, r in rows:
        lines[_get(r, cfg.series) if cfg.series else ""].append((_get(r, cfg.x), r))
    fig, axes = plt.subplots(1, len(cfg.y), figsize=(4.2 * len(cfg.y), 3.4), squeeze=False)
    for ax, key in zip(axes[0], cfg.y, strict=True):
        for label, pts in sorted(lines.items(), key=lambda kv: str(kv[0])):
            pts = sorted(pts, key=lambda p: p[0])
            ax.plot([p[0] for p in pts], [_get(p[1], key) for p in pts], "o-", label=str(label) or None)
        ax.set_xlabel(cfg.x.split(".")[-1])
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    if cfg.series:
        axes[0][-1].legend(fontsize=8)
    if cfg.title:
        fig.suptitle(cfg.title)
    fig.tight_layout()
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(cfg.out, dpi=110)
    plt.close(fig)
    head = ([cfg.series] if cfg.series else []) + [cfg.x, *cfg.y]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in sorted(rows, key=lambda fr: (str(_get(fr[1], cfg.series)) if cfg.series else "", _get(fr[1], cfg.x))):
        vals = [_get(r, k) for k in head]
        table.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in vals) + " |")
    cfg.out.with_suffix(".md").write_text((f"# {cfg.title}\n\n" if cfg.title else "") + "\n".join(table) + "\n")
    return cfg.out


def _get(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            raise ValueError(f"key {dotted!r} is not in the eval JSON (missing {part!r})")
        d = d[part]
    return d
