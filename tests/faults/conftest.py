"""Fault injection for the reliability suite: tiny stores and runs, damaged on purpose, and subprocesses
killed with SIGKILL at a precise point (a patched function kills its own process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from saelab import train
from saelab.store.format import sha256, write_json_atomic
from tests.inspect.inspect_helpers import HOOK, write_store

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}


@pytest.fixture
def store(tmp_path) -> Path:
    """640 tokens (40 windows of 16) of heavy-tailed synthetic activations, d_model 24, in shards of 112."""
    return write_store(tmp_path / "store")


def train_cfg(store: Path, out: Path, name: str, *sets: str) -> train.TrainConfig:
    """20 steps of 64 tokens, a metrics line and a checkpoint every 4 steps."""
    return train.load_config(
        None,
        [
            f"data.store='{store}'",
            "data.batch_size=64",
            "sae.architecture='topk'",
            "sae.k=4",
            "sae.expansion=2",
            "train.tokens=1280",
            "train.log_every=4",
            "train.checkpoint_every=4",
            "train.wandb='disabled'",
            "train.progress=false",
            f"train.out='{out}'",
            f"train.name='{name}'",
            *sets,
        ],
    )


def write_toml(cfg: train.TrainConfig, path: Path) -> Path:
    """The config as a TOML file for `saelab train FILE`."""
    lines = []
    for section, values in cfg.model_dump(mode="json", exclude_none=True).items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def poison(store: Path, row: int, value: float, feature: int = 3) -> tuple[str, int]:
    """Set activation (`row`, `feature`) of the store to `value` and record the shard's new checksum, as a
    bfloat16 overflow during a harvest leaves it: checksums consistent, one NaN or Inf. (shard file, row in it)."""
    m = json.loads((store / "manifest.json").read_text())
    start = 0
    for s in m["shards"]:
        if row < start + s["n_tokens"]:
            break
        start += s["n_tokens"]
    f = store / s["file"]
    raw = np.memmap(f, dtype=np.uint8, mode="r+")
    n = int(np.frombuffer(raw[:8], "<u8")[0])  # safetensors: header length, JSON header, data
    info = json.loads(bytes(raw[8 : 8 + n]))[HOOK]
    assert info["dtype"] == "F32"
    at = 8 + n + info["data_offsets"][0] + ((row - start) * m["d_model"] + feature) * 4
    raw[at : at + 4] = np.frombuffer(np.float32(value).tobytes(), np.uint8)
    raw.flush()
    del raw
    s["sha256"] = sha256(f)
    write_json_atomic(store / "manifest.json", m)
    return s["file"], row - start


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python -m saelab.cli ARGS` in a subprocess; its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "saelab.cli", *args],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def killed(setup: str, argv: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the saelab CLI with `argv` in a subprocess after `setup` (Python that patches a function to SIGKILL
    the process at the chosen point, via `die()`); asserts that it did die by SIGKILL."""
    script = (
        textwrap.dedent(
            """
        import os, signal, sys
        def die():
            os.kill(os.getpid(), signal.SIGKILL)
        """
        )
        + textwrap.dedent(setup)
        + f"\nfrom saelab.cli import main\nsys.exit(main({argv!r}))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", script], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert p.returncode == -9, f"expected a SIGKILL, got exit {p.returncode}:\n{p.stdout}\n{p.stderr[-3000:]}"
    return p


def files(d: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(d.iterdir()) if f.is_file()}
