"""One table from many circuits runs: per task and method, ROC AUC mean +- std over prompt seeds against the
ground truth of prompts no method saw, the ceiling (exact patching on disjoint prompts against that ground
truth) and mean runtimes: `saelab circuits table results/circuits [--out table.md]`."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

COLUMNS = (
    ("sae-codes paper", "paper", "sae-codes"),
    ("sae-codes saelab", "saelab", "sae-codes"),
    ("saelab shift (argmax codes)", "saelab", "sae-codes-shift"),
    ("saelab z (u_h)", "saelab", "sae-codes-z"),
    ("saelab pair (uncalibrated)", "saelab", "sae-codes-pair"),
    ("attribution", None, "attribution"),
    ("EAP-IG", None, "eap-ig"),
    ("attribution graphs", None, "graph"),
    ("graphs + QK", None, "graph-qk"),
    ("ceiling", None, "patching-held-out"),
)


def collect(root: Path) -> dict[str, dict[str, dict[str, list[float]]]]:
    """{task: {column: {"auc": [...], "runtime_s": [...]}}} over every circuits.json under `root`; the
    patching runtime goes under "patching"."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    files = sorted(root.glob("**/circuits.json"))
    collected = [f.resolve().parts for f in files]
    for f in files:
        r = json.loads(f.read_text())
        task, recipe = r["config"]["task"], r["config"].get("recipe", "saelab")
        source = r.get("effects_from", {})
        # effects reused from a file this table also reads are counted there; from any other file, here
        reused = set(source.get("reused", [])) if _read_here(source.get("file", ""), collected) else set()
        for label, want_recipe, key in COLUMNS:
            if key not in r.get("auc", {}) or (want_recipe and want_recipe != recipe):
                continue
            if want_recipe is None and key in reused:
                continue  # counted once, in the run that measured it
            out[task][label]["auc"].append(r["auc"][key])
            if key in r["runtime_s"]:
                out[task][label]["runtime_s"].append(r["runtime_s"][key])
        if "patching" in r["runtime_s"] and "patching" not in reused:
            out[task]["patching"]["runtime_s"].append(r["runtime_s"]["patching"])
    return out


def _read_here(source: str, collected: list[tuple[str, ...]]) -> bool:
    """Whether `source` (an effects_from path as the run saw it, often relative to its working directory) is
    one of the collected files: equal when absolute, a trailing part of one when relative."""
    path = Path(source)
    if not source:
        return False
    if path.is_absolute():
        return path.resolve().parts in collected
    tail = path.parts
    return any(c[-len(tail) :] == tail for c in collected)


def markdown(data: dict) -> str:
    """AUC mean +- std (n seeds) per task and column, then the mean runtimes in seconds."""
    head = "| task | " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (len(COLUMNS) + 1)]
    for task in sorted(data):
        cells = []
        for label, *_ in COLUMNS:
            a = data[task].get(label, {}).get("auc", [])
            cells.append(f"{np.mean(a):.3f} +- {np.std(a):.3f} ({len(a)})" if a else "-")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "| task | " + " | ".join(c[0] for c in COLUMNS) + " | exact patching |", lines[1] + " --- |"]
    for task in sorted(data):
        cells = []
        for label in [c[0] for c in COLUMNS] + ["patching"]:
            t = data[task].get(label, {}).get("runtime_s", [])
            cells.append(f"{np.mean(t):.1f} s" if t else "-")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(root: Path, out: Path | None = None) -> str:
    """The markdown table of the runs under `root`, also written to `out` when given (`saelab circuits table`)."""
    text = markdown(collect(root))
    if out is not None:
        out.write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    """`python -m saelab.circuits.table`, the old name of `saelab circuits table`."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path, help="folder holding the runs' circuits.json files")
    p.add_argument("--out", type=Path, help="also write the table here")
    a = p.parse_args(argv)
    print(write_table(a.root, a.out))
    return 0


if __name__ == "__main__":
    print("saelab: `python -m saelab.circuits.table` is now `saelab circuits table`", file=sys.stderr)
    raise SystemExit(main())
