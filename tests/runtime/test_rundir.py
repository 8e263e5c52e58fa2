"""RunDir: the one description of a training run's layout, and everything that reads a run through it."""

from __future__ import annotations

import pytest

from saelab.runtime.rundir import RunDir
from saelab.sae import load_sae
from saelab.sae.saelens_io import sae_dir, sae_files
from tests.runtime.run_helpers import make_run


def test_layout_is_the_documented_one(tmp_path) -> None:
    run = RunDir(str(tmp_path / "r"))
    assert run.root == tmp_path / "r"
    assert (run.config, run.checkpoints, run.metrics, run.wandb, run.sae) == tuple(
        tmp_path / "r" / n for n in ("config.json", "checkpoints", "metrics.jsonl", "wandb", "sae")
    )
    assert run.eval_result("text-valid") == tmp_path / "r" / "eval-text-valid.json"
    assert not run.is_run()
    with pytest.raises(AttributeError):
        run.root = tmp_path  # frozen


def test_holding_finds_the_run_of_an_export_only(tmp_path) -> None:
    run = make_run(tmp_path / "r")
    assert RunDir.holding(run.sae) == run
    assert RunDir.holding(run.root) is None  # a run is not its own export
    lone = tmp_path / "lone" / "sae"
    lone.mkdir(parents=True)
    assert RunDir.holding(lone) is None  # named sae but no run config beside it


def test_sae_dir_and_load_sae_accept_a_run_or_its_export(tmp_path) -> None:
    run = make_run(tmp_path / "r")
    assert sae_dir(run.root) == sae_dir(run.sae) == run.sae
    assert sae_files(run.root) == (run.sae / "cfg.json", run.sae / "sae_weights.safetensors")
    assert load_sae(run.root).cfg == load_sae(run.sae).cfg
    unfinished = make_run(tmp_path / "u", exported=False)
    with pytest.raises(FileNotFoundError, match=r"has no exported SAE yet \(no sae/cfg.json\)"):
        load_sae(unfinished.root)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sae_dir(tmp_path / "nothing")


def test_eval_default_out_sits_beside_the_run(tmp_path) -> None:
    from saelab.evals.config import EvalConfig
    from saelab.evals.run import _default_out

    run = make_run(tmp_path / "r")
    for given in (run.root, run.sae):
        assert _default_out(EvalConfig(sae=given, corpus="text:a b.txt", split="heldout")) == run.root / (
            "eval-text-a-b-txt-heldout.json"
        )
    lone = tmp_path / "lone"
    lone.mkdir()
    assert _default_out(EvalConfig(sae=lone, corpus="stdlib")).parent == lone


def test_read_metrics_returns_the_logged_rows_in_order(tmp_path) -> None:
    run = RunDir(tmp_path)
    assert run.read_metrics() == []  # nothing logged yet
    run.metrics.write_text('{"step": 5, "l0": 3.5}\n{"step": 10, "l0": 2.0}\n')
    assert run.read_metrics() == [{"step": 5, "l0": 3.5}, {"step": 10, "l0": 2.0}]
