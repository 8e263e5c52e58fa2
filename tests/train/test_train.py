"""The trainer on real SmolLM2 activations: sparsity control, exact resume, sharding invariance, export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab import train
from saelab.runtime.rundir import RunDir
from saelab.sae import encode, load_sae
from tests.peer_modules import peer
from tests.train.same_run import assert_same_run

HOOK = "blocks.3.hook_resid_post"  # the real_store fixture's hook (conftest.py)


def _cfg(store: Path, out: Path, name: str, *sets: str):
    return train.load_config(
        None,
        [
            f"data.store='{store}'",
            "data.batch_size=512",
            "sae.expansion=2",
            "train.tokens=20480",
            "train.log_every=5",
            "train.checkpoint_every=10",
            "train.wandb='disabled'",
            "train.progress=false",
            f"train.out='{out}'",
            f"train.name='{name}'",
            *sets,
        ],
    )


def test_jumprelu_l0_falls_as_coefficient_rises_and_thresholds_stay_float32(real_store, tmp_path) -> None:
    l0s = []
    for coef in (1e-4, 3e-3, 1e-1):
        r = train.run(
            _cfg(
                real_store,
                tmp_path,
                f"jr-{coef}",
                "sae.architecture='jumprelu'",
                f"sae.l0_coefficient={coef}",
                "sae.compute_dtype='bfloat16'",
                "train.input_scaling='unit'",
                "optim.lr=7e-4",
                "optim.b1=0.0",
                "train.tokens=40960",
            )
        )
        assert r.params.threshold.dtype == jnp.float32
        assert r.params.W_enc.dtype == jnp.float32
        l0s.append(np.mean([m["l0"] for m in RunDir(r.run_dir).read_metrics()[-4:]]))
    assert l0s[0] > l0s[1] > l0s[2], f"L0 does not fall with the coefficient: {l0s}"
    assert l0s[0] > 1.5 * l0s[2]


def test_stopped_and_resumed_run_ends_bitwise_equal(real_store, tmp_path) -> None:
    full = train.run(_cfg(real_store, tmp_path, "full"))
    cfg = _cfg(real_store, tmp_path, "split")
    part = train.run(cfg, stop_at_step=15)
    assert part.steps == 15 and not part.export_dir.exists()
    resumed = train.run(train.load_run_config(part.run_dir), resume=True)
    assert resumed.steps == full.steps == 40
    assert_same_run(full, resumed)


def test_resume_refuses_changed_config_and_existing_run_needs_overwrite(real_store, tmp_path) -> None:
    train.run(_cfg(real_store, tmp_path, "a"), stop_at_step=5)
    with pytest.raises(ValueError, match="exists"):
        train.run(_cfg(real_store, tmp_path, "a"))
    with pytest.raises(ValueError, match="another config"):
        train.run(_cfg(real_store, tmp_path, "a", "optim.lr=1e-3"), resume=True)


_SHARDED = """
import json, sys
from saelab import train
from saelab.runtime.rundir import RunDir
cfg = train.load_config(None, json.loads(sys.argv[1]))
train.run(cfg)
"""


@pytest.mark.parametrize("arch", ["topk", "jumprelu"])
def test_one_and_four_devices_give_the_same_losses(real_store, tmp_path, arch) -> None:
    runs = {}
    for devices, mesh in ((1, ("1", "1")), (4, ("2", "2"))):
        sets = [
            f"data.store='{real_store}'",
            "data.batch_size=512",
            "sae.expansion=2",
            "train.tokens=10240",
            "train.log_every=1",
            "train.checkpoint_every=100",
            "train.wandb='disabled'",
            "train.progress=false",
            f"train.out='{tmp_path}'",
            f"train.name='d{devices}'",
            f"sae.architecture='{arch}'",
            f"train.mesh_data={mesh[0]}",
            f"train.mesh_model={mesh[1]}",
        ]
        env = os.environ | {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
        subprocess.run([sys.executable, "-c", _SHARDED, json.dumps(sets)], env=env, check=True)
        runs[devices] = RunDir(tmp_path / f"d{devices}").read_metrics()
    assert len(runs[1]) == len(runs[4]) == 20
    for a, b in zip(runs[1], runs[4], strict=False):
        for key in ("loss", "mse", "l0", "explained_variance"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (key, a["step"], a[key], b[key])


@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu", "batchtopk"])
def test_export_loads_in_saelens_and_encodes_identically(real_store, tmp_path, arch) -> None:
    sae_lens = peer("sae_lens")
    import torch

    r = train.run(_cfg(real_store, tmp_path, arch, f"sae.architecture='{arch}'", "train.tokens=5120"))
    ours = load_sae(r.run_dir)
    theirs = sae_lens.SAE.load_from_disk(str(r.export_dir), device="cpu")
    assert theirs.cfg.metadata.hook_name == HOOK
    from saelab.store import ActivationStore

    x = np.asarray(ActivationStore(real_store).activations(HOOK)[1:257], np.float32)
    a = np.asarray(encode(ours.params, jnp.asarray(x), ours.cfg))
    with torch.no_grad():
        b = theirs.encode(torch.from_numpy(x)).numpy()
    assert (a != 0).sum() > 0
    np.testing.assert_array_equal(a != 0, b != 0)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert jax.device_get(ours.params.W_dec).shape == (ours.cfg.d_sae, ours.cfg.d_in)
