"""SAEBench's offline metrics as saelab evaluators (sae-bench 0.6 definitions, tested against its code): core,
absorption, sparse probing (sae-probes datasets), MDL and meta-structure, run by `saelab eval RUN --suite ...`."""

from saelab.evals.saebench.registry import EVALUATORS, resolve_suite
from saelab.evals.saebench.suite import run

__all__ = ["EVALUATORS", "resolve_suite", "run"]
