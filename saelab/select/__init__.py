"""Data selection by SAE codes (MoNA; docs/selection.md, "The method"): embed samples as mean SAE codes,
score them against a target prototype by weighted Jaccard, keep the top fraction; baselines in the same
interface; a bench.

    from saelab.select import SelectConfig, run
    run(SelectConfig(pool="pool.jsonl", target="target.jsonl", sae="checkpoints/demo", out="results/sel"))
"""

from saelab.select.config import SelectConfig
from saelab.select.run import run
from saelab.select.similarity import cosine, neg_euclidean, score_sparse, top_fraction, weighted_jaccard

__all__ = [
    "SelectConfig",
    "cosine",
    "neg_euclidean",
    "run",
    "score_sparse",
    "top_fraction",
    "weighted_jaccard",
]
