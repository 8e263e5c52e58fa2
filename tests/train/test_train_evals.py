"""Evals during training: logged with the step at the configured interval, and equal to `saelab eval` of
that step's SAE on the same held-out tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from saelab import train
from saelab.evals import EvalConfig
from saelab.evals.run import run as run_eval
from saelab.runtime.rundir import RunDir
from saelab.train.evaluate import KEYS


def _cfg(store: Path, out: Path, name: str, steps: int, eval_every: int):
    return train.load_config(
        None,
        [
            f"data.store='{store}'",
            "data.batch_size=512",
            "sae.expansion=2",
            f"train.tokens={steps * 512}",
            "train.log_every=5",
            "train.checkpoint_every=100",
            f"train.eval_every={eval_every}",
            "train.eval_tokens=512",
            "train.eval_batch=2",
            "train.wandb='disabled'",
            "train.progress=false",
            f"train.out='{out}'",
            f"train.name='{name}'",
        ],
    )


def _saelab_eval(run: Path, out: Path) -> dict:
    cfg = EvalConfig(sae=run, corpus="python-docs", tokens=512, batch=2, context=128, progress=False, out=out)
    return run_eval(cfg)


def test_in_training_evals_are_logged_every_n_steps_and_equal_saelab_eval(real_store, tmp_path) -> None:
    r = train.run(_cfg(real_store, tmp_path, "evals", 20, 10))
    rows = RunDir(r.run_dir).read_metrics()
    assert [m["step"] for m in rows] == [5, 10, 15, 20]
    assert [m["step"] for m in rows if "eval/ce_loss_recovered" in m] == [10, 20]
    ref = _saelab_eval(r.run_dir, tmp_path / "eval.json")  # the export is the SAE of step 20
    assert ref["meta"]["tokens_evaluated"] == 512
    for k in KEYS:
        assert rows[3][f"eval/{k}"] == pytest.approx(ref[k], rel=1e-5, abs=1e-6), k
    assert rows[3]["eval/explained_variance"] > rows[1]["eval/explained_variance"]
    assert rows[1]["eval/ce_loss_clean"] == rows[3]["eval/ce_loss_clean"]  # the same fixed tokens each time
