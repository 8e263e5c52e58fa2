"""How much of each SAEBench metric a suite run computes: `SuiteSizes`, and the named variants `VARIANTS` (`full` is
SAEBench's own workload, `quick` the smoke test behind `--quick`, `medium` what compares SAEs on two CPU cores).

The full workload is out of reach of a 2-core CPU (absorption's 47,078 ten-shot prompts are about 3.8M prompt
tokens; sparse probing's 113 datasets about 36M); the quick one is too thin to tell SAEs apart (9 letters pass
absorption's probe, 3 probing datasets). Every result names the variant and the sizes it ran with.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

VariantName = Literal["full", "medium", "quick"]


class SuiteSizes(NamedTuple):
    """The workload of one suite run; None means SAEBench's own (all of it)."""

    absorption_words: int | None
    """Words sampled (seed 42) from the alphabetic vocabulary for absorption's probe and absorption prompts."""
    probing_datasets: tuple[str, ...] | None
    """sae-probes datasets scored by sparse probing (numbered tags, e.g. `5_hist_fig_ismale`)."""
    probing_test_rows: int | None
    """The first rows of each probing test set that are scored (the training sets are always whole)."""
    token_batches: int | None
    """Core and MDL run on this many batches of `batch x context` tokens; None: `EvalConfig.tokens`."""
    meta_steps: int
    """Training steps of meta-structure's meta-SAE (1,024 decoder rows each)."""

    def describe(self) -> str:
        """One line naming every size, for reports."""
        words = "all words" if self.absorption_words is None else f"{self.absorption_words:,} words"
        sets = "all datasets" if self.probing_datasets is None else f"{len(self.probing_datasets)} datasets"
        rows = "whole test sets" if self.probing_test_rows is None else f"test sets cut to {self.probing_test_rows}"
        toks = "`tokens`" if self.token_batches is None else f"{self.token_batches} batch(es)"
        return f"absorption {words}; sparse probing {sets}, {rows}; core/MDL {toks}; meta-SAE {self.meta_steps} steps"


QUICK_DATASETS = ("5_hist_fig_ismale", "6_hist_fig_isamerican", "7_hist_fig_ispolitician")
# Short prompts from four kinds of task: names (3), news headlines (2), Wikidata people, sentiment, art titles.
MEDIUM_DATASETS = (
    *QUICK_DATASETS,
    "21_headline_istrump",
    "23_headline_ischina",
    "56_wikidatasex_or_gender",
    "92_glue_sst2",
    "126_art_type_book",
)

VARIANTS: dict[VariantName, SuiteSizes] = {
    "full": SuiteSizes(None, None, None, None, 1500),
    "medium": SuiteSizes(10_000, MEDIUM_DATASETS, 1000, 4, 500),
    "quick": SuiteSizes(800, QUICK_DATASETS, 500, 1, 150),
}


def resolve(cfg) -> tuple[str, SuiteSizes]:
    """(variant name, sizes) of an `EvalConfig`: its named variant with any size it sets over it; the name says
    which sizes were changed (`medium, absorption_words=2000`)."""
    name: VariantName = "quick" if cfg.suite_quick else cfg.suite_variant or "full"
    sizes = VARIANTS[name]
    given = {
        "absorption_words": cfg.absorption_words,
        "probing_datasets": tuple(cfg.probing_datasets) if cfg.probing_datasets is not None else None,
        "probing_test_rows": cfg.probing_test_rows,
    }
    changed = {k: v for k, v in given.items() if v is not None and v != getattr(sizes, k)}
    label = ", ".join([name, *(f"{k}={_short(v)}" for k, v in changed.items())])
    return label, sizes._replace(**changed)


def _short(value) -> str:
    return str(len(value)) + " named" if isinstance(value, tuple) else str(value)
