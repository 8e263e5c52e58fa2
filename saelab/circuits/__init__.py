"""Circuit discovery from discrete SAE codes (O'Neill & Bui, arXiv 2405.12522) with patching baselines.

`run(CircuitsConfig(task="ioi"))` builds paired prompts, measures exact and mean-ablation patching of every
head (the ground truth), attribution patching (the fast baseline) and the SAE-code ranking, and writes
circuits.json, heat maps and ROC curves.
"""

from saelab.circuits.codes import CodesResult, edge_scores, head_vectors, node_scores, sae_codes
from saelab.circuits.config import CircuitsConfig
from saelab.circuits.patching import Baselines, HeadEffects, attribution_patching, baselines, exact_patching
from saelab.circuits.run import run, stability
from saelab.circuits.scoring import best_precision_recall, ground_truth, roc_auc, roc_curve
from saelab.circuits.tasks import TaskData, build_task

__all__ = [
    "Baselines",
    "CircuitsConfig",
    "CodesResult",
    "HeadEffects",
    "TaskData",
    "attribution_patching",
    "baselines",
    "best_precision_recall",
    "build_task",
    "edge_scores",
    "exact_patching",
    "ground_truth",
    "head_vectors",
    "node_scores",
    "roc_auc",
    "roc_curve",
    "run",
    "sae_codes",
    "stability",
]
