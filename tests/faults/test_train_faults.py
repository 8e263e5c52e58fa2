"""Training faults: SIGKILL during a checkpoint write, between checkpoints and during the export, and a full disk
at a checkpoint; each resumed run ends with the weights and metrics of an uninterrupted one, bit for bit.
An interrupted `saelab train export` leaves the run intact and a rerun completes."""

from __future__ import annotations

import errno
import json

import orbax.checkpoint as ocp
import pytest

from saelab import train
from saelab.sae import load_sae
from tests.inspect.inspect_helpers import write_store

from .conftest import cli, killed, train_cfg


@pytest.fixture(scope="module")
def ref_store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("store") / "s")


@pytest.fixture(scope="module")
def reference(ref_store, tmp_path_factory) -> train.TrainResult:
    return train.run(train_cfg(ref_store, tmp_path_factory.mktemp("runs"), "ref"))


def _metrics(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in m.items() if k != "tokens_per_s"} for m in rows]


def _same_as_reference(run_dir, reference: train.TrainResult) -> None:
    weights = "sae/sae_weights.safetensors"
    assert (run_dir / weights).read_bytes() == (reference.run_dir / weights).read_bytes()
    assert _metrics(run_dir) == _metrics(reference.run_dir)


def _argv(cfg: train.TrainConfig) -> list[str]:
    values = cfg.model_dump(mode="json", exclude_none=True).items()
    return ["train", *(a for s, kv in values for k, v in kv.items() for a in ("--set", f"{s}.{k}={json.dumps(v)}"))]


# Each patch makes the training process SIGKILL itself at one point (steps: 20, log and checkpoint every 4).
KILL_POINTS = {
    # checkpoint 8 handed to orbax, its files being written in the background
    "during a checkpoint write": """
        from saelab.train import checkpoint
        real = checkpoint.save
        def save(mngr, step, state, loader_state):
            real(mngr, step, state, loader_state)
            if step == 8:
                die()
        checkpoint.save = save
    """,
    # metrics of step 16 written, checkpoint 16 not: the resumed run truncates the log and redoes the steps
    "between checkpoints": """
        import importlib
        log = importlib.import_module("saelab.train.metrics_log")
        real = log.MetricsLog.write
        def write(self, step, *a):
            out = real(self, step, *a)
            if step == 16:
                die()
            return out
        log.MetricsLog.write = write
    """,
    # every step done and checkpointed, the export's weights written, its cfg.json not yet renamed in
    "during the export": """
        import os
        real = os.replace
        def replace(src, dst):
            if str(dst).endswith("cfg.json"):
                die()
            real(src, dst)
        os.replace = replace
    """,
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkilled_training_resumes_bitwise(ref_store, reference, tmp_path, point) -> None:
    cfg = train_cfg(ref_store, tmp_path, "killed")
    killed(KILL_POINTS[point], _argv(cfg))
    assert not (cfg.run_dir / "sae" / "cfg.json").exists()
    with pytest.raises(FileNotFoundError, match=r"no exported SAE yet .*saelab train --resume"):
        load_sae(cfg.run_dir)
    done = train.run(train.load_run_config(cfg.run_dir), resume=True)
    # checkpoints are written in the background, one at a time, and renamed into place when whole: a kill
    # leaves the one in flight unfinished, and the resume starts from the one before it
    starts = {"during a checkpoint write": {4, 8}, "between checkpoints": {8, 12}, "during the export": {20}}
    assert done.start_step in starts[point]
    _same_as_reference(cfg.run_dir, reference)


def test_full_disk_at_a_checkpoint_names_the_fix_and_resume_completes(ref_store, reference, tmp_path, monkeypatch):
    real = ocp.CheckpointManager.save

    def save(self, step, *a, **kw):
        if step == 12:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, step, *a, **kw)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    cfg = train_cfg(ref_store, tmp_path, "full")
    with pytest.raises(OSError, match=r"checkpoint step 12 .*No space left on device.*--resume .*step 8 is kept"):
        train.run(cfg)
    monkeypatch.setattr(ocp.CheckpointManager, "save", real)
    assert not (cfg.run_dir / "sae").exists()
    train.run(train.load_run_config(cfg.run_dir), resume=True)
    _same_as_reference(cfg.run_dir, reference)


def test_interrupted_export_loses_nothing_and_a_rerun_completes(reference, tmp_path) -> None:
    dest = tmp_path / "exported"
    die_after_first_file = """
        import shutil
        real = shutil.copyfile
        def copyfile(src, dst, **kw):
            real(src, dst, **kw)
            die()
        shutil.copyfile = copyfile
    """
    killed(die_after_first_file, ["train", "export", str(reference.run_dir), "--out", str(dest)])
    with pytest.raises(FileNotFoundError, match="is not a complete SAE directory: .* is missing"):
        load_sae(dest)  # the half copy is never taken for an SAE
    again = cli("train", "export", str(reference.run_dir), "--out", str(dest))
    assert again.returncode == 2 and "pass --overwrite" in again.stderr
    assert cli("train", "export", str(reference.run_dir), "--out", str(dest), "--overwrite").returncode == 0
    weights = "sae_weights.safetensors"
    assert (dest / weights).read_bytes() == (reference.run_dir / "sae" / weights).read_bytes()
    load_sae(reference.run_dir)  # the source is intact
