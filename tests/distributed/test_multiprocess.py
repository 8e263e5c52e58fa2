"""Two real processes (gloo): harvest equals a 1-process harvest; training equals 1-process training; a killed
2-process run resumes from its checkpoint on 2 processes, and the same checkpoint continues on 1 process.

Each process is `worker.py` with one CPU device, joined by jax.distributed; `start(job, spec, n)` launches
them. The 1-process references run in this (pytest) process, which never joins a runtime.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saelab import train
from saelab.harvest import HarvestConfig
from saelab.harvest import run as harvest
from saelab.runtime.rundir import RunDir
from saelab.store import ActivationStore

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("worker.py")
HOOK = "blocks.3.hook_resid_post"
# 32 windows of 128 tokens, 8 windows per shard (a multiple of the batch of 4, so each process's first
# window starts a batch and the 2-process store is bit-identical), 4 shards: 2 per process.
HARVEST = {"hooks": [HOOK], "tokens": 4096, "context": 128, "batch": 4, "shard_tokens": 1024, "dtype": "float32"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(job: str, spec: dict, n: int, devices: int = 1) -> list[subprocess.Popen]:
    """Start `n` worker processes of one run with `devices` CPU devices each (process i gets
    SAELAB_TEST_PROCESS_ID=i)."""
    port = free_port()
    procs = []
    for i in range(n):
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {
            "JAX_PLATFORMS": "cpu",
            "SAELAB_TEST_COORDINATOR": f"127.0.0.1:{port}",
            "SAELAB_TEST_PROCESSES": str(n),
            "SAELAB_TEST_PROCESS_ID": str(i),
        }
        if devices > 1:
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), job, json.dumps(spec)],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def wait(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    """Every process's output; fails naming the process that did not exit 0 (killing the rest)."""
    deadline = time.time() + timeout
    outs = []
    for i, p in enumerate(procs):
        try:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"process {i} of {len(procs)} timed out")
        if p.returncode != 0:
            for q in procs:
                q.kill()
            pytest.fail(f"process {i} of {len(procs)} exited {p.returncode}:\n{out[-4000:]}")
        outs.append(out)
    return outs


def launch(job: str, spec: dict, n: int = 2, devices: int = 1) -> list[str]:
    return wait(start(job, spec, n, devices))


def result(out: str) -> dict[str, int]:
    """The worker's `RESULT k=v ...` line as a dict."""
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


@pytest.fixture(scope="session")
def store_1p(tmp_path_factory) -> Path:
    """The reference store: a 1-process harvest (SmolLM2-135M, layer 3, Python docstrings)."""
    out = tmp_path_factory.mktemp("harvest") / "one-process"
    harvest(HarvestConfig(**HARVEST, out=out), progress=False)
    return out


STEPS = 40
KEYS = ("loss", "mse", "l0", "explained_variance", "aux_loss", "dead_fraction")


def _files(d: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(d.iterdir())}


def test_two_process_harvest_is_the_one_process_store_byte_for_byte(store_1p: Path, tmp_path) -> None:
    out = tmp_path / "two-process"
    outs = launch("harvest", HARVEST | {"out": str(out)})
    assert sorted(result(o)["process"] for o in outs) == [0, 1] and result(outs[0])["devices"] == 2
    one, two = _files(store_1p), _files(out)
    assert list(two) == list(one) == ["manifest.json", *(f"shard_{i:06d}.safetensors" for i in range(4))]
    for name in one:
        assert two[name] == one[name], f"{name} differs between the 1- and 2-process harvests"
    store = ActivationStore(out, verify="full")
    assert store.complete and store.n_tokens == 4096


def test_harvest_over_two_local_devices_is_the_one_device_store(store_1p: Path, tmp_path) -> None:
    """One process, two devices: the batch's windows are split over them (as on a TPU host or a GPU node)."""
    out = tmp_path / "two-devices"
    (o,) = launch("harvest", HARVEST | {"out": str(out)}, n=1, devices=2)
    assert result(o)["devices"] == 2
    assert _files(out) == _files(store_1p)


def _sets(store: Path, out: Path, name: str) -> list[str]:
    return [
        f"data.store='{store}'",
        "data.batch_size=256",
        "sae.expansion=2",
        f"train.tokens={STEPS * 256}",
        "train.log_every=1",
        "train.checkpoint_every=5",
        "train.keep_checkpoints=20",
        "train.wandb='disabled'",
        "train.progress=false",
        f"train.out='{out}'",
        f"train.name='{name}'",
    ]


def _assert_same_losses(got: list[dict], want: list[dict], what: str) -> None:
    assert [m["step"] for m in got] == [m["step"] for m in want], what
    for a, b in zip(got, want, strict=True):
        for k in KEYS:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (what, k, a["step"], a[k], b[k])


def _finished_checkpoints(run_dir: Path) -> list[int]:
    d = RunDir(run_dir).checkpoints
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


@pytest.fixture(scope="module")
def killed_run(store_1p: Path, tmp_path_factory) -> tuple[Path, int, Path]:
    """A 2-process run SIGKILLed (both processes) once it has a finished checkpoint: (run dir, the last
    checkpoint's step, an untouched copy of the run dir under another train.out for the 1-process test)."""
    out = tmp_path_factory.mktemp("runs")
    procs = start("train", {"sets": _sets(store_1p, out, "killed")}, 2)
    run_dir = out / "killed"
    deadline = time.time() + 300
    while not _finished_checkpoints(run_dir):
        if any(p.poll() is not None for p in procs) or time.time() > deadline:
            wait(procs, 5)  # reports the failure (a crash or a run too quick to kill)
            pytest.fail("the 2-process run ended before it could be killed")
        time.sleep(0.02)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()
    done = _finished_checkpoints(run_dir)
    assert 0 < done[-1] < STEPS, f"killed at checkpoints {done}: not mid-way"
    copy = out / "copy" / "killed"
    shutil.copytree(run_dir, copy)
    cfg = train.load_run_config(copy)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"out": copy.parent})})
    RunDir(copy).config.write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    return run_dir, done[-1], copy


@pytest.fixture(scope="module")
def reference(store_1p: Path, tmp_path_factory) -> list[dict]:
    """The same run in this single process (one device): its per-step metrics."""
    out = tmp_path_factory.mktemp("ref")
    r = train.run(train.load_config(None, _sets(store_1p, out, "one-process")))
    assert r.steps == STEPS
    return RunDir(r.run_dir).read_metrics()


def test_killed_two_process_run_resumes_on_two_and_matches_one_process_training(killed_run, reference) -> None:
    run_dir, ckpt, _ = killed_run
    before = RunDir(run_dir).read_metrics()  # what the 2 processes logged before they were killed (>= the checkpoint)
    assert before[-1]["step"] >= ckpt
    # the two processes alone trained steps 1..ckpt: the same losses as one process on the same global batch
    _assert_same_losses(before[:ckpt], reference[:ckpt], "2-process training vs 1-process")
    outs = launch("resume", {"run": str(run_dir)})
    assert [result(o)["start"] for o in outs] == [ckpt, ckpt], "did not resume from the last checkpoint"
    assert all(result(o)["steps"] == STEPS for o in outs)
    _assert_same_losses(RunDir(run_dir).read_metrics(), reference, "2-process killed + resumed vs 1-process")
    assert (RunDir(run_dir).sae / "cfg.json").exists()


def test_checkpoint_of_two_processes_continues_on_one(killed_run, reference) -> None:
    _, ckpt, run_dir = killed_run
    r = train.run(train.load_run_config(run_dir), resume=True)
    assert r.start_step == ckpt and r.steps == STEPS
    _assert_same_losses(RunDir(run_dir).read_metrics(), reference, "2-process checkpoint continued on 1 process")
