"""The architecture table (stage kind `saebench-table`) from suite and autointerp JSONs, and the `autointerp`
stage kind: both run through `saelab run`'s registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saelab import experiment
from saelab.evals.autointerp import AutointerpConfig
from saelab.evals.config import EvalConfig
from saelab.evals.saebench import table


def _suite(path, l0: float, absorption: float | None, variant: str = "medium") -> None:
    result = {
        "meta": {"architecture": "topk", "variant": variant},
        "core": {"l0": l0, "saelab_explained_variance": 0.8, "ce_loss_score": 0.9, "kl_div_score": 0.85,
                 "frac_alive": 0.97},
        "sparse-probing": {"sae_top_1_test_accuracy": 0.61, "sae_top_5_test_accuracy": 0.7},
    }  # fmt: skip
    if absorption is not None:
        result["absorption"] = {"mean_absorption_fraction_score": absorption, "mean_full_absorption_score": 0.01}
    path.write_text(json.dumps(result))


def _autointerp(path, detection: float, control: float) -> None:
    summary = {
        name: {"score": detection, "control": control, "above_control": 0.5} for name in ("detection", "fuzzing")
    }
    summary["embedding"] = {"score": 0.6, "control": 0.52, "above_control": 0.75}
    path.write_text(json.dumps({"summary": summary}))


def test_table_stage_writes_rows_controls_and_plot(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _suite(tmp_path / "a.json", 32.0, 0.125)
    _suite(tmp_path / "b.json", 31.5, None)
    _autointerp(tmp_path / "a-ai.json", 0.55, 0.5)
    (tmp_path / "t.toml").write_text("""
[[stages]]
kind = "saebench-table"
title = "two SAEs"
out = "results/{name}/table.md"
saes = [{ name = "first", suite = "a.json", autointerp = "a-ai.json" }, { name = "second", suite = "b.json" }]
""")
    [(stage, out)] = experiment.run(tmp_path / "t.toml", log=lambda _: None)
    assert stage.kind == "saebench-table" and out == Path("results/t/table.md")
    text = (tmp_path / "results/t/table.md").read_text()
    lines = text.splitlines()
    first = next(line for line in lines if line.startswith("| first |"))
    second = next(line for line in lines if line.startswith("| second |"))
    assert "| 32.0 | 0.800 | 0.900 | 0.850 | 0.97 | 0.125 | 0.010 | 0.610 | 0.700 |" in first
    assert first.endswith("| 0.550 / 0.500 | 0.550 / 0.500 | 0.600 / 0.520 |")
    assert second.count("| - ") == 5  # no absorption, no autointerp
    assert "variant: medium" in text
    assert (tmp_path / "results/t/table.png").stat().st_size > 1000
    rows = json.loads((tmp_path / "results/t/table.json").read_text())
    assert rows[0]["controls"]["embedding"] == 0.52 and rows[1]["values"]["absorption"] is None


def test_table_names_a_missing_json(tmp_path) -> None:
    cfg = table.TableConfig(saes=[{"name": "x", "suite": tmp_path / "none.json"}], out=tmp_path / "t.md")
    with pytest.raises(FileNotFoundError, match="the suite JSON .*none.json does not exist"):
        table.run(cfg)


def test_autointerp_stage_kind_writes_its_out(tmp_path) -> None:
    (tmp_path / "a.toml").write_text("""
[[stages]]
kind = "autointerp"
sae = "checkpoints/x"
n_latents = 4
n_test = 3
quick = { n_latents = 2 }
""")
    _, [stage] = experiment.load(tmp_path / "a.toml", quick=True)
    assert isinstance(stage.config, AutointerpConfig) and stage.config.n_latents == 2
    kind = experiment.STAGES["autointerp"]
    assert kind.output(stage.config) == Path("checkpoints/x/autointerp.json")
    assert kind.output(stage.config.model_copy(update={"out": tmp_path / "a.json"})) == tmp_path / "a.json"


def test_saebench_stage_kind_runs_the_suite_and_writes_beside_the_run(tmp_path) -> None:
    (tmp_path / "s.toml").write_text("""
[[stages]]
kind = "saebench"
sae = "checkpoints/x"
suite = "core,absorption"
suite_variant = "medium"
quick = { suite_variant = "quick" }
""")
    _, [stage] = experiment.load(tmp_path / "s.toml", quick=True)
    kind = experiment.STAGES["saebench"]
    assert kind.config is EvalConfig and stage.config.suite_variant == "quick"
    assert kind.output(stage.config) == Path("checkpoints/x/eval-saebench-quick.json")
