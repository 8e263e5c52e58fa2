"""Harvest on SmolLM2: stored activations equal a direct forward; a SIGKILLed harvest resumes byte-identically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from saelab.data import open_corpus
from saelab.harvest import HarvestConfig, run
from saelab.models import Model
from saelab.store import ActivationStore, StoreMismatchError

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ["blocks.2.hook_resid_post", "blocks.4.hook_mlp_out"]


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.load("smollm2-135m")


def test_store_matches_direct_forward_and_decodes_to_source(model: Model, tmp_path) -> None:
    cfg = HarvestConfig(hooks=HOOKS, tokens=1000, batch=4, shard_tokens=256, out=tmp_path / "s")
    store = ActivationStore(run(cfg, model=model, progress=False))
    assert store.n_tokens == 1024 and len(store.manifest["shards"]) == 4  # 8 windows of 128
    tokens = np.asarray(store.tokens).reshape(-1, 128)
    assert (tokens[:, 0] == model.bos_id).all() and (np.asarray(store.pos).reshape(-1, 128)[:, 0] == 0).all()
    _, cache = model.run_with_cache(jnp.asarray(tokens), HOOKS)
    for h in HOOKS:
        want = np.asarray(cache[h]).reshape(-1, 576).astype(ml_dtypes.bfloat16).astype(np.float32)
        got = np.asarray(store.activations(h)).astype(np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2 * np.abs(want).max())
        assert np.mean(got == want) > 0.95  # the same bf16 value almost everywhere (XLA may fuse differently)
    text = "\n".join(d.text for d in open_corpus("python-docs", split="train"))
    for w in tokens[:3]:
        piece = model.tokenizer.decode(w[1:].tolist())
        assert piece.replace("<|im_end|>", "\n")[:200].split("\n")[0] in text


def test_other_settings_refused_without_overwrite(model: Model, tmp_path) -> None:
    run(HarvestConfig(hooks=HOOKS[:1], tokens=128, batch=1, out=tmp_path / "s"), model=model, progress=False)
    with pytest.raises(StoreMismatchError, match="corpus"):
        run(
            HarvestConfig(
                hooks=HOOKS[:1], tokens=128, batch=1, out=tmp_path / "s", corpus="python-docs", split="heldout"
            ),
            model=model,
            progress=False,
        )
    with pytest.raises(ValueError, match="unknown hook point"):
        run(HarvestConfig(hooks=["blocks.2.hook_bogus"], tokens=128, out=tmp_path / "t"), model=model)


def _harvest_cmd(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "saelab.cli",
        "harvest",
        "--hooks",
        "blocks.3.hook_resid_post",
        "--tokens",
        "3072",
        "--batch",
        "2",
        "--shard-tokens",
        "512",
        "--out",
        str(out),
    ]


def test_sigkilled_harvest_resumes_to_identical_store(tmp_path) -> None:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    subprocess.run(_harvest_cmd(tmp_path / "ref"), check=True, env=env, cwd=ROOT, capture_output=True)
    proc = subprocess.Popen(
        _harvest_cmd(tmp_path / "kill"), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not (tmp_path / "kill" / "shard_000002.safetensors").exists():
        assert proc.poll() is None and time.time() < deadline, "harvest ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = ActivationStore(tmp_path / "kill").manifest
    assert not partial["complete"] and 0 < partial["n_tokens"] < 3072
    subprocess.run(_harvest_cmd(tmp_path / "kill"), check=True, env=env, cwd=ROOT, capture_output=True)
    files = lambda d: {f.name: f.read_bytes() for f in sorted(d.iterdir())}
    assert files(tmp_path / "kill") == files(tmp_path / "ref")
    verify = subprocess.run(
        [sys.executable, "-m", "saelab.cli", "store", "verify", str(tmp_path / "kill")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout
