"""The SAEBench evaluators by name: `EVALUATORS` maps a `--suite` name to its `Evaluator`; adding one is a module
and a line here. `OFFLINE` names those `--suite saebench` runs (everything that needs no hub or hosted model)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from saelab.evals.autointerp import suite as autointerp
from saelab.evals.saebench import absorption, core, mdl, meta_structure, sparse_probing
from saelab.evals.saebench.context import BenchContext


class Evaluator(NamedTuple):
    """An evaluator: `evaluate(ctx)` -> JSON-ready metrics, `markdown(metrics)` -> its report section."""

    evaluate: Callable[[BenchContext], dict[str, Any]]
    markdown: Callable[[dict[str, Any]], str]


EVALUATORS: dict[str, Evaluator] = {
    "core": Evaluator(core.evaluate, core.markdown),
    "absorption": Evaluator(absorption.evaluate, absorption.markdown),
    "sparse-probing": Evaluator(sparse_probing.evaluate, sparse_probing.markdown),
    "mdl": Evaluator(mdl.evaluate, mdl.markdown),
    "meta-structure": Evaluator(meta_structure.evaluate, meta_structure.markdown),
    "autointerp": Evaluator(autointerp.evaluate, autointerp.markdown),
}

OFFLINE = ("core", "absorption", "sparse-probing", "mdl", "meta-structure")


def resolve_suite(spec: str) -> list[str]:
    """`core,absorption` -> those names in order; `saebench` -> every offline one; ValueError naming the choices."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        for name in OFFLINE if part == "saebench" else (part,):
            if name not in EVALUATORS:
                raise ValueError(f"--suite: unknown evaluator {name!r}; choose among saebench, {', '.join(EVALUATORS)}")
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError("--suite is empty: name evaluators, e.g. --suite core,absorption or --suite saebench")
    return names
