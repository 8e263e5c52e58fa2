"""Head rankings from attribution graphs (issue 34, item 5): each prompt's feature circuit through the
replacement model (`saelab trace`), its kept cross-position edges attributed to the attention heads whose OV
path carries them (`saelab.trace.heads`), averaged over the task's prompts: the ranking `graph`. From the
same graphs, `graph-qk` adds to each head the flow it steers through later heads' queries and keys
(`saelab.trace.qk_heads`), which a graph with frozen attention does not hold, for the change of its output
that the ground truth patches in (its output on the positive prompt minus that on the paired negative).

A prompt counts once: its head scores are divided by their sum before the average. The graph's logit targets
are circuit-tracer's (the most probable tokens up to 95%, at most 10), for every task alike, and greater-than's
scoring tokens are left off the prompt, so each graph explains the next token the task reads.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from saelab.circuits.config import CircuitsConfig
from saelab.circuits.patching import HeadEffects
from saelab.circuits.tasks import TaskData
from saelab.models import Model
from saelab.runtime.progress import progress_bar
from saelab.trace import attribute, qk
from saelab.trace import transcoders as trace_transcoders
from saelab.trace.heads import head_flow
from saelab.trace.prune import prune
from saelab.trace.qk_heads import head_outputs, qk_head_effects


def prompt_tokens(task: TaskData, i: int, negative: bool = False) -> np.ndarray:
    """Pair i's positive (or negative) prompt without its padding and the tokens appended only for scoring."""
    toks = (task.neg if negative else task.pos)[i][task.mask[i] == 1]
    return toks[: len(toks) - task.scoring_tokens]


def graph_heads(
    model: Model,
    task: TaskData,
    transcoders: str | Path,
    *,
    prompts: int,
    max_feature_nodes: int | None,
    max_edges: int,
    batch_size: int = 128,
    progress: bool = True,
) -> dict[str, HeadEffects]:
    """{"graph", "graph-qk"}: (n_layers, n_heads) head scores from the attribution graphs of the task's first
    `prompts` positives (each capped at `max_feature_nodes` features, its `max_edges` strongest kept
    cross-position edges): the OV flow each head carries, and that plus the flow it steers (QK) when its
    output changes to its output on the paired negative prompt."""
    tc = trace_transcoders.load(transcoders)
    t0 = time.perf_counter()
    n = min(prompts, task.n)
    total = {k: np.zeros((model.cfg.n_layers, model.cfg.n_heads)) for k in ("graph", "graph-qk")}
    qk_s = 0.0
    with progress_bar("graphs/s", progress) as bar:
        job = bar.add_task("attribution graphs", total=n, info=f"{task.name}, {n} prompts")
        for i in range(n):
            tokens = prompt_tokens(task, i)
            graph = attribute(model, tc, tokens, batch_size=batch_size, max_feature_nodes=max_feature_nodes)
            state = qk.prepare(model, tc, graph)
            flow = head_flow(state, tc, graph, prune(graph).edge_mask, max_edges)
            ov = flow.sum((2, 3))
            t1 = time.perf_counter()
            patched = head_outputs(model, tokens) - head_outputs(model, prompt_tokens(task, i, negative=True))
            both = ov + qk_head_effects(state, flow, patched)
            qk_s += time.perf_counter() - t1
            total["graph"] += ov / max(float(ov.sum()), 1e-30)
            total["graph-qk"] += both / max(float(both.sum()), 1e-30)
            bar.update(job, advance=1)
    seconds = time.perf_counter() - t0
    runtime = {"graph": seconds - qk_s, "graph-qk": seconds}
    return {k: HeadEffects(k, v / n, v / n, runtime[k]) for k, v in total.items()}


def graph_effects(model: Model, task: TaskData, cfg: CircuitsConfig) -> dict[str, HeadEffects]:
    """`graph_heads` with a run's settings (`transcoders`, `graph_prompts`, `graph_max_features`, `graph_edges`)."""
    return graph_heads(
        model,
        task,
        cfg.transcoders,
        prompts=cfg.graph_prompts,
        max_feature_nodes=cfg.graph_max_features,
        max_edges=cfg.graph_edges,
        progress=cfg.progress,
    )
