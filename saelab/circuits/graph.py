"""Head rankings from attribution graphs (issue 34, item 5): each prompt's feature circuit through the
replacement model (`saelab trace`), its kept cross-position edges attributed to the attention heads whose OV
path carries them (`saelab.trace.heads`), averaged over the task's prompts.

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
from saelab.trace.heads import head_ranking
from saelab.trace.prune import prune


def prompt_tokens(task: TaskData, i: int) -> np.ndarray:
    """Pair i's positive prompt without its padding and without the tokens appended only for scoring."""
    toks = task.pos[i][task.mask[i] == 1]
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
) -> HeadEffects:
    """(n_layers, n_heads) head scores from the attribution graphs of the task's first `prompts` positives
    (each capped at `max_feature_nodes` features, its `max_edges` strongest kept cross-position edges)."""
    tc = trace_transcoders.load(transcoders)
    t0 = time.perf_counter()
    n = min(prompts, task.n)
    total = np.zeros((model.cfg.n_layers, model.cfg.n_heads))
    with progress_bar("graphs/s", progress) as bar:
        job = bar.add_task("attribution graphs", total=n, info=f"{task.name}, {n} prompts")
        for i in range(n):
            graph = attribute(
                model, tc, prompt_tokens(task, i), batch_size=batch_size, max_feature_nodes=max_feature_nodes
            )
            ranking = head_ranking(qk.prepare(model, tc, graph), tc, graph, prune(graph).edge_mask, max_edges)
            total += ranking / max(float(ranking.sum()), 1e-30)
            bar.update(job, advance=1)
    effect = total / n
    return HeadEffects("graph", effect, effect, time.perf_counter() - t0)


def graph_effects(model: Model, task: TaskData, cfg: CircuitsConfig) -> HeadEffects:
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
