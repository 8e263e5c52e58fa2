"""The suite runner: `--suite` names resolved by the registry (clear errors otherwise), and `saelab eval --suite`
writing the JSON and the markdown report (the weight-only evaluator, so no model is loaded)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saelab.cli import main
from saelab.evals.saebench.registry import EVALUATORS, resolve_suite
from saelab.sae import save_saelens
from tests.evals.saebench.conftest import HOOK, twin_sae


def test_resolve_suite() -> None:
    assert resolve_suite("saebench") == ["core", "absorption", "sparse-probing", "mdl", "meta-structure"]
    assert resolve_suite("mdl, core,mdl") == ["mdl", "core"]
    assert set(resolve_suite("saebench")) <= set(EVALUATORS)
    with pytest.raises(ValueError, match="unknown evaluator 'absorbtion'; choose among saebench, core"):
        resolve_suite("core,absorbtion")


def test_eval_suite_writes_json_and_report(tmp_path, capsys) -> None:
    twin = twin_sae(seed=12, d_in=24, d_sae=64)
    sae_dir = save_saelens(tmp_path / "sae", twin.params, twin.cfg, {"hook_name": HOOK, "model_name": "smollm2-135m"})
    out = tmp_path / "bench.json"
    assert main(["eval", str(sae_dir), "--suite", "meta-structure", "--quick", "--no-progress", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["meta"]["variant"] == "quick" and result["meta"]["suite"] == ["meta-structure"]
    fve = result["meta-structure"]["decoder_fraction_variance_explained"]
    assert 0 < fve < 1 and np.isfinite(result["meta-structure"]["seconds"])
    assert "## meta-structure" in out.with_suffix(".md").read_text()
    assert str(out) in capsys.readouterr().out
