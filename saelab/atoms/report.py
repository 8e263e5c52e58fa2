"""The atoms table as markdown, in the paper's form: per hook and dictionary, R^2 and the uniqueness
fraction / q*, then the definition of every column and the paper's numbers for comparison."""

from __future__ import annotations

from typing import Any

from saelab.atoms.analysis import fmt

COLUMNS = [
    ("layer", "layer"),
    ("dictionary", "dictionary"),
    ("d_sae", "m"),
    ("l0", "L0"),
    ("r2", "R^2"),
    ("uniqueness", "unique atoms"),
    ("uniqueness_samples", "unique samples"),
    ("q_star", "q*"),
    ("uniqueness_support", "unique atoms (supp)"),
    ("q_star_support", "q* (supp)"),
    ("coherence", "mu (AIP)"),
    ("coherence_median", "median mu_i"),
    ("coherence_euclidean", "mu (Euclid)"),
    ("rip_delta", "delta_K"),
    ("lasso_recall", "LASSO recall"),
]
PERCENT = {"r2", "uniqueness", "uniqueness_samples", "q_star", "lasso_recall", "uniqueness_support", "q_star_support"}


def markdown_table(result: dict[str, Any]) -> str:
    """`atoms.md`: the table, the column definitions and the paper's reference numbers."""
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = ["# Atoms table", "", head, "|" + "---|" * len(COLUMNS)]
    for row in result["table"]:
        cells = []
        for key, _ in COLUMNS:
            v = row.get(key)
            if key in PERCENT and isinstance(v, float):
                cells.append(f"{100 * v:.1f}%")
            elif key == "rip_delta" and v is not None:
                cells.append(f"{fmt(v, 3)} (K={row['rip_k']})")
            else:
                cells.append(fmt(v, 4))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"{result['tokens_analysed']:,} tokens (window positions >= {result['config']['min_position']}) of store "
        f"`{result['store']['path']}`.",
        "",
        "## Definitions",
        "",
    ]
    defs = result["definitions"]
    for key, title in COLUMNS:
        if key in defs:
            lines.append(f"- **{title}** (`{key}`): {defs[key]}")
    lines += ["", "## AIP metric per hook", ""]
    for hook, m in result["metric"].items():
        note = f"; {m['warning']}" if m.get("warning") else ""
        lines.append(f"- `{hook}`: {m['definition']}, condition number {m['cond']:.3g}, ridge {m['ridge']:.3g}{note}")
    p = result["paper"]
    lines += [
        "",
        "## Paper",
        "",
        f"{p['source']}: atoms R^2 {100 * p['r2_atoms']:.1f}%, q* {100 * p['q_star_atoms']:.1f}%; "
        f"features R^2 {100 * p['r2_features']:.1f}%, q* {100 * p['q_star_features']:.1f}%; "
        f"neurons R^2 {100 * p['r2_neurons']:.0f}%, q* {100 * p['q_star_neurons']:.1f}%.",
        "",
    ]
    return "\n".join(lines)
