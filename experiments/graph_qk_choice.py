"""How the QK side of the graph head ranking was chosen: on prompt seed 0 only (the circuits protocol's
choice seed; experiments/circuits.toml reports seeds 1-5), SmolLM2-135M, the per-layer transcoders of
experiments/transcoders.toml, the first 8 held-out prompts as the `graph` method traces them.

    saelab circuits TASK --model smollm2-135m --seed 0 --method patching --prompts 40 --no-held-out \\
        --no-mean-ablation --out results/graph-qk-choice/TASK          # seed 0's ground truth
    python experiments/graph_qk_choice.py TASK [--out results/graph-qk-choice/TASK]

Prints the AUC against that ground truth of the OV ranking (`graph`), the QK effects alone and OV + QK, with
the QK change being a head's whole output ("full") or its output on the positive minus the paired negative
prompt, as patching changes it ("diff"). Each prompt's arrays are kept in `arrays.npz` beside the ground truth.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from saelab.circuits.config import CircuitsConfig
from saelab.circuits.graph import prompt_tokens
from saelab.circuits.run import HELD_STREAM, make_task
from saelab.circuits.scoring import roc_auc
from saelab.models import Model
from saelab.trace import attribute, qk
from saelab.trace import transcoders as trace_transcoders
from saelab.trace.heads import head_flow
from saelab.trace.prune import prune
from saelab.trace.qk_heads import head_outputs, qk_head_effects


def per_prompt(task: str, transcoders: str, prompts: int) -> dict[str, np.ndarray]:
    """(prompts, L, heads) each: the OV flow per head, the QK effects of the whole outputs and of the diffs."""
    model = Model.load("smollm2-135m")
    cfg = CircuitsConfig(task=task, model="smollm2-135m", seed=0, prompts=40, progress=False)
    held = make_task(model, cfg, cfg.prompts, (0, HELD_STREAM))
    tc = trace_transcoders.load(transcoders)
    rows: dict[str, list] = {"ov": [], "qk_full": [], "qk_diff": []}
    for i in range(prompts):
        toks = prompt_tokens(held, i)
        graph = attribute(model, tc, toks, max_feature_nodes=512)
        state = qk.prepare(model, tc, graph)
        flow = head_flow(state, tc, graph, prune(graph).edge_mask, 2048)
        out = head_outputs(model, toks)
        rows["ov"].append(flow.sum((2, 3)))
        rows["qk_full"].append(qk_head_effects(state, flow, out))
        rows["qk_diff"].append(qk_head_effects(state, flow, out - head_outputs(model, prompt_tokens(held, i, True))))
        print(f"prompt {i} done", flush=True)
    return {k: np.stack(v) for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task", choices=("ioi", "greater-than", "docstring"))
    ap.add_argument("--out", help="seed 0's ground-truth folder (default results/graph-qk-choice/TASK)")
    ap.add_argument("--transcoders", default="checkpoints/transcoders-plt")
    ap.add_argument("--prompts", type=int, default=8)
    a = ap.parse_args()
    root = Path(a.out or f"results/graph-qk-choice/{a.task}")
    truth = json.loads((root / "circuits.json").read_text())
    if truth["config"]["seed"] != 0:
        raise SystemExit(f"{root}/circuits.json is seed {truth['config']['seed']}'s: choices are made on seed 0")
    cache = root / "arrays.npz"
    if not cache.exists():
        np.savez(cache, **per_prompt(a.task, a.transcoders, a.prompts))
    arr = dict(np.load(cache))
    labels = np.isin(truth["heads"], truth["ground_truth"]["heads"])
    mean = lambda x: (x / x.sum((1, 2), keepdims=True)).mean(0).ravel()  # each prompt counts once
    variants = {k: arr[k] for k in ("ov", "qk_full", "qk_diff")}
    variants |= {"ov+qk_full": arr["ov"] + arr["qk_full"], "ov+qk_diff": arr["ov"] + arr["qk_diff"]}
    aucs = {k: round(roc_auc(mean(v), labels), 3) for k, v in variants.items()}
    print(f"RESULT task={a.task} seed=0 " + " ".join(f"{k}={v}" for k, v in aucs.items()))


if __name__ == "__main__":
    main()
