"""SAE evaluation on held-out text: the metrics of docs/methods.md ("Metric definitions"), CE loss recovered by splicing
the reconstruction into the model at the SAE's hook, and a markdown report with plots."""

from saelab.evals.config import EvalConfig
from saelab.evals.run import run

__all__ = ["EvalConfig", "run"]
