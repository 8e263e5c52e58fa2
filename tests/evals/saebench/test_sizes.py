"""The suite's workloads: named variants, sizes set over them (named in the result), and --quick as one of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from saelab.evals.config import EvalConfig
from saelab.evals.saebench import sizes, suite


def test_variants_by_name_and_quick() -> None:
    assert sizes.resolve(EvalConfig(sae=Path("x"))) == ("full", sizes.VARIANTS["full"])
    assert sizes.resolve(EvalConfig(sae=Path("x"), suite_quick=True)) == ("quick", sizes.VARIANTS["quick"])
    medium = sizes.resolve(EvalConfig(sae=Path("x"), suite_variant="medium"))[1]
    quick = sizes.VARIANTS["quick"]
    assert medium.absorption_words > quick.absorption_words and len(medium.probing_datasets) > 3
    assert set(quick.probing_datasets) < set(medium.probing_datasets)
    with pytest.raises(ValueError, match="--quick and suite_variant 'medium' disagree"):
        EvalConfig(sae=Path("x"), suite_quick=True, suite_variant="medium")


def test_sizes_set_over_a_variant_are_named() -> None:
    cfg = EvalConfig(sae=Path("x"), suite_variant="medium", absorption_words=2000, probing_datasets=["92_glue_sst2"])
    name, got = sizes.resolve(cfg)
    assert name == "medium, absorption_words=2000, probing_datasets=1 named"
    assert got.absorption_words == 2000 and got.probing_datasets == ("92_glue_sst2",)
    assert got.probing_test_rows == sizes.VARIANTS["medium"].probing_test_rows
    same = EvalConfig(sae=Path("x"), suite_quick=True, absorption_words=800)  # the variant's own value
    assert sizes.resolve(same)[0] == "quick"
    assert "800 words" in sizes.VARIANTS["quick"].describe()


def test_default_out_names_the_variant(tmp_path) -> None:
    for variant, file in (("full", "eval-saebench.json"), ("medium", "eval-saebench-medium.json")):
        assert suite.default_out(EvalConfig(sae=tmp_path, suite_variant=variant)).name == file
    assert suite.default_out(EvalConfig(sae=tmp_path, suite_quick=True)).name == "eval-saebench-quick.json"
