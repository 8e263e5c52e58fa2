"""wandb tracking: offline by default, under the run directory; resume continues the wandb run, --overwrite
starts a new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from saelab import train
from saelab.runtime.rundir import RunDir
from saelab.train.config import TrainConfig
from saelab.train.metrics_log import wandb_run_id


def _cfg(store: Path, out: Path, *sets: str) -> TrainConfig:
    return train.load_config(
        None,
        [
            f"data.store='{store}'",
            "data.batch_size=512",
            "sae.expansion=2",
            "train.tokens=10240",
            "train.log_every=5",
            "train.checkpoint_every=5",
            "train.progress=false",
            f"train.out='{out}'",
            "train.name='tracked'",
            *sets,
        ],
    )


def _wandb_runs(run_dir: Path) -> list[tuple[str, Path]]:
    """(run id, folder) of each offline wandb run under the run dir; folders are offline-run-<time>-<id>."""
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    return [(f.name.split("-", 3)[3], f) for f in folders]


def test_offline_is_the_default_and_overwrite_starts_a_new_run(
    real_store, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert TrainConfig().train.wandb == "offline"
    first = train.run(_cfg(real_store, tmp_path), stop_at_step=10)
    first_id = RunDir(first.run_dir).wandb_id.read_text().strip()
    runs = _wandb_runs(first.run_dir)
    assert [i for i, _ in runs] == [first_id]
    assert (runs[0][1] / f"run-{first_id}.wandb").stat().st_size > 0

    resumed = train.run(train.load_run_config(first.run_dir), resume=True)
    assert resumed.steps == 20
    assert RunDir(first.run_dir).wandb_id.read_text().strip() == first_id
    assert {i for i, _ in _wandb_runs(first.run_dir)} == {first_id}  # the same wandb run, continued

    again = train.run(_cfg(real_store, tmp_path), overwrite=True)
    again_id = RunDir(again.run_dir).wandb_id.read_text().strip()
    assert again_id != first_id and again_id.startswith("tracked-")
    assert [i for i, _ in _wandb_runs(again.run_dir)] == [again_id]


def test_a_run_from_before_ids_were_kept_resumes_under_its_name(tmp_path) -> None:
    (tmp_path / "wandb").mkdir()
    assert wandb_run_id(RunDir(tmp_path), "old/run") == "old-run" == RunDir(tmp_path).wandb_id.read_text().strip()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    ids = {wandb_run_id(RunDir(fresh), "a b"), wandb_run_id(RunDir(tmp_path / "fresh"), "a b")}
    assert len(ids) == 1 and next(iter(ids)).startswith("a-b-")  # made once, then read back


def test_disabled_writes_no_wandb_files(real_store, tmp_path) -> None:
    r = train.run(_cfg(real_store, tmp_path, "train.wandb='disabled'"))
    assert r.steps == 20
    assert not (r.run_dir / "wandb").exists() and not RunDir(r.run_dir).wandb_id.exists()
