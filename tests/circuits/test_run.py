"""`run(cfg)` end to end on tiny random models with the SmolLM2 tokenizer, and the config's checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from saelab.circuits.config import CircuitsConfig
from saelab.circuits.published import IOI
from saelab.circuits.run import run
from saelab.cli import main

FAST = dict(prompts=4, sae_prompts=3, epochs=20, latents=16, progress=False)


def test_cli_runs_all_methods_and_writes_json_and_plots(tokenizer, tiny, tmp_path, capsys) -> None:
    path = tiny(tmp_path / "m", "llama", tokenizer)
    flags = "--prompts 4 --sae-prompts 3 --epochs 20 --latents 16 --no-progress --stability-seeds 2"
    assert main(["circuits", "ioi", "--model", str(path), *flags.split(), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "sae-codes" in printed and "attribution" in printed and "AUC over 2 draws" in printed
    saved = json.loads((tmp_path / "out" / "circuits.json").read_text())
    assert saved["auc"].keys() == {
        "sae-codes",
        "sae-codes-edges",
        "sae-codes-shift",
        "sae-codes-z",
        "sae-codes-pair",
        "attribution",
        "mean-ablation",
    }
    assert set(saved["runtime_s"]) == {"patching", "mean-ablation", "attribution", "sae-codes"}
    assert len(saved["heads"]) == 12 and all(len(v) == 12 for v in saved["scores"].values())
    assert saved["ground_truth"]["n_heads"] >= 1 and len(saved["stability"]["sae-codes"]["auc"]) == 2
    for f in saved["files"].values():
        assert (tmp_path / "out" / f).stat().st_size > 0
    assert saved["task"]["pairs"] == 4 and 0 <= saved["task"]["accuracy"] <= 1
    assert saved["config"]["epochs"] == 20 and saved["config"]["stability_seeds"] == 2

    # re-scoring other SAE settings against the saved ground truth measures no patching again
    again = dict(FAST, task="ioi", model=str(path), method="sae-codes", effects_from=tmp_path / "out" / "circuits.json")
    res = run(CircuitsConfig(**again | {"latents": 8}, out=tmp_path / "again"))
    assert res["runtime_s"]["patching"] == saved["runtime_s"]["patching"]
    assert res["effects_from"]["reused"] == ["attribution", "mean-ablation", "patching"]
    assert np.allclose(res["effects"]["patching"]["normalised"], saved["effects"]["patching"]["normalised"])
    assert res["ground_truth"]["heads"] == saved["ground_truth"]["heads"]
    with pytest.raises(ValueError, match="other"):
        run(CircuitsConfig(**again | {"prompts": 5}, out=tmp_path / "bad"))


def _published_ioi(path, tmp_path) -> CircuitsConfig:
    """IOI scored by SAE codes against the published ground-truth heads, on the tiny model at `path`."""
    return CircuitsConfig(
        task="ioi", model=str(path), method="sae-codes", ground_truth="published", out=tmp_path / "out", **FAST
    )


def test_published_ground_truth_on_gpt2_small_shape(tokenizer, tiny, tmp_path) -> None:
    cfg = _published_ioi(tiny(tmp_path / "g", "gpt2", tokenizer), tmp_path)
    res = run(cfg)
    assert "patching" not in res["runtime_s"]  # the published set needs no patching
    assert res["ground_truth"]["n_heads"] == sum(len(v) for v in IOI.values()) == 26
    assert "9.9" in res["ground_truth"]["heads"] and 0 <= res["auc"]["sae-codes"] <= 1


def test_published_ground_truth_rejects_other_models(tokenizer, tiny, tmp_path) -> None:
    cfg = _published_ioi(tiny(tmp_path / "m", "llama", tokenizer), tmp_path)
    with pytest.raises(ValueError, match="GPT-2 small"):
        run(cfg)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        CircuitsConfig(task="ioi", bogus=1)
    with pytest.raises(ValidationError, match="published"):
        CircuitsConfig(task="docstring", ground_truth="published")
    with pytest.raises(ValidationError, match="task must be"):
        CircuitsConfig(task="sorting")
    assert CircuitsConfig(task="docstring", scaling="mean-norm").l1_value == 0.05
    assert CircuitsConfig(task="docstring").l1_value == 0.5
    assert np.isclose(CircuitsConfig(task="ioi", l1=0.1).l1_value, 0.1)


def test_load_config_from_toml_with_overrides(tmp_path) -> None:
    from saelab.circuits.config import load_config

    f = tmp_path / "c.toml"
    f.write_text('[circuits]\ntask = "greater-than"\nprompts = 12\n')
    cfg = load_config(f, prompts=None, seed=3)
    assert (cfg.task, cfg.prompts, cfg.seed, cfg.l1_value) == ("greater-than", 12, 3, 0.5)
    assert cfg.out == Path("results/circuits/greater-than")  # default output directory per task
    assert CircuitsConfig(task="jsonl:data/my_task.jsonl").out == Path("results/circuits/my_task")
