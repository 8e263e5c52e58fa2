"""SAEBench's offline metrics as saelab evaluators (sae-bench 0.6 definitions, tested against its code): core,
absorption, sparse probing (sae-probes datasets), MDL and meta-structure, run by `saelab eval RUN --suite ...`.

The evaluators need the `saebench` extra (pandas, zstandard, scikit-learn); the package itself imports none of
it, so the experiment runner and the CLI load without it, and `run` names the install command when it is missing."""

from __future__ import annotations

from typing import Any

from saelab.evals.saebench.requirements import check_installed

__all__ = ["run", "default_out"]


def run(cfg, model=None) -> dict[str, Any]:
    """The suite `cfg.suite` names on `cfg.sae` (saelab.evals.saebench.suite.run), after checking the extra."""
    check_installed()
    from saelab.evals.saebench.suite import run as run_suite

    return run_suite(cfg, model)


def default_out(cfg):
    """Where the suite writes without `--out` (saelab.evals.saebench.suite.default_out)."""
    check_installed()
    from saelab.evals.saebench.suite import default_out as suite_default_out

    return suite_default_out(cfg)
