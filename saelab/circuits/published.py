"""Published circuits of GPT-2 small, the ground truth of O'Neill & Bui's evaluation in its own setting.

IOI: Wang et al. 2022 (arXiv 2211.00593), figure 2 and appendix; greater-than: Hanna et al. 2023
(arXiv 2305.00586), section 3. Heads as (layer, head).
"""

from __future__ import annotations

import numpy as np

from saelab.models import ModelConfig

IOI = {
    "name mover": [(9, 9), (10, 0), (9, 6)],
    "backup name mover": [(10, 10), (10, 6), (10, 2), (10, 1), (11, 2), (9, 7), (9, 0), (11, 9)],
    "negative name mover": [(10, 7), (11, 10)],
    "s-inhibition": [(7, 3), (7, 9), (8, 6), (8, 10)],
    "induction": [(5, 5), (5, 8), (5, 9), (6, 9)],
    "duplicate token": [(0, 1), (0, 10), (3, 0)],
    "previous token": [(2, 2), (4, 11)],
}
GREATER_THAN = {"circuit": [(5, 1), (5, 5), (6, 1), (6, 9), (7, 10), (8, 8), (8, 11), (9, 1)]}
PUBLISHED = {"ioi": IOI, "greater-than": GREATER_THAN}
GPT2_SMALL_SHAPE = (12, 12)


def published_heads(task: str, cfg: ModelConfig) -> np.ndarray:
    """(n_layers, n_heads) boolean mask of the published circuit; the model must be GPT-2 small shaped."""
    if task not in PUBLISHED:
        raise ValueError(f"no published circuit for task {task!r}; known: {sorted(PUBLISHED)}")
    if cfg.family != "gpt2" or (cfg.n_layers, cfg.n_heads) != GPT2_SMALL_SHAPE:
        raise ValueError(
            f"published head sets are for GPT-2 small (12 layers x 12 heads); this model is {cfg.family} "
            f"with {cfg.n_layers} layers x {cfg.n_heads} heads: use ground_truth='patching'"
        )
    mask = np.zeros(GPT2_SMALL_SHAPE, bool)
    for heads in PUBLISHED[task].values():
        for layer, head in heads:
            mask[layer, head] = True
    return mask
