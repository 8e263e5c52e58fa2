"""`saelab train plan` agrees with the real train state: jax.eval_shape of it, in the trainer's own shardings."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from saelab import train
from saelab.train import plan_cli
from saelab.train.plan import Mesh, plan_config

ROOT = Path(__file__).resolve().parents[2]

# In a process with 8 CPU devices: the big state's shapes from jax.eval_shape (nothing allocated), each leaf's
# sharding from the trainer's initial_state on the same mesh with a small d_sae (same tree, same specs).
_REAL = r"""
import json, sys
import jax, numpy as np
from saelab import train
from saelab.sae import init_params, sae_config
from saelab.train.mesh import make_mesh
from saelab.train.placement import initial_state
from saelab.train.state import init_state, make_optimizer

cfg = train.load_config(None, json.loads(sys.argv[1]))
extra = dict(cfg.sae.model_extra or {})
big = sae_config(extra, d_in=int(sys.argv[2]), d_sae=cfg.sae.d_sae)
small = sae_config(extra, d_in=16, d_sae=64)
mesh = make_mesh(cfg.train.mesh_data, cfg.train.mesh_model)
real, _ = initial_state(small, cfg, mesh)
unit = cfg.train.unit_norm_decoder
unit = big.architecture in ("topk", "batchtopk", "matryoshka") if unit is None else unit
key = jax.random.key(cfg.train.seed)
shapes = jax.eval_shape(
    lambda k: init_state(init_params(k, big), make_optimizer(cfg.optim, cfg.steps, unit), k), key)
out = {}
for part in ("params", "opt_state", "step", "since_fired", "window_counts", "rng"):
    leaves, like = jax.tree.leaves(getattr(shapes, part)), jax.tree.leaves(getattr(real, part))
    assert len(leaves) == len(like), part
    out[part] = sum(int(np.prod(s.sharding.shard_shape(a.shape))) * a.dtype.itemsize
                    for a, s in zip(leaves, like, strict=True))
print(json.dumps(out))
"""


def _sets(arch: str, d_sae: int, data: int, model: int) -> list[str]:
    return [
        f"sae.architecture='{arch}'",
        f"sae.d_sae={d_sae}",
        "data.batch_size=4096",
        f"train.mesh_data={data}",
        f"train.mesh_model={model}",
    ]


def _plan_json(args: list[str], capsys) -> dict:
    p = argparse.ArgumentParser()
    plan_cli.register(p.add_subparsers())
    ns = p.parse_args(["train plan", *args, "--json"])  # the parser `saelab train plan` reaches
    assert ns.fn(ns) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("arch", "data", "model"), [("topk", 8, 1), ("jumprelu", 4, 2)])
def test_plan_matches_eval_shape_of_the_real_train_state(arch, data, model, capsys) -> None:
    """65,536 latents on Gemma 2 2B's d_model 2,304, 8 devices (all data-parallel, or 4 x 2)."""
    sets = _sets(arch, 65536, data, model)
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", _REAL, json.dumps(sets), "2304"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    real = json.loads(proc.stdout.strip().splitlines()[-1])
    shown = _plan_json(["--d-in", "2304", "--devices", "8", *sum((["--set", s] for s in sets), [])], capsys)
    assert (shown["d_in"], shown["d_sae"], shown["mesh_data"], shown["mesh_model"]) == (2304, 65536, data, model)
    assert shown["parameters"] == real["params"]
    assert shown["Adam moments"] == real["opt_state"]
    assert shown["latent bookkeeping"] == real["step"] + real["since_fired"] + real["window_counts"] + real["rng"]
    assert shown["train state (checkpointed)"] == sum(real.values())
    # W_enc + W_dec dominate: 2 * 2304 * 65536 float32 split over the model axis
    assert shown["parameters"] == pytest.approx(2 * 2304 * 65536 * 4 / model, rel=1e-3)


def test_plan_scales_and_refuses_impossible_meshes() -> None:
    cfg = train.load_config(None, _sets("topk", 16384, -1, 2))
    p16 = plan_config(cfg, d_in=2304, devices=8)
    p1m = plan_config(cfg.model_copy(update={"sae": cfg.sae.model_copy(update={"d_sae": 1 << 20})}), 2304, 8)
    assert p16.mesh == Mesh(4, 2) and p1m.params == pytest.approx(64 * p16.params, rel=1e-3)
    assert p1m.batch == p16.batch and p1m.activations > p16.activations
    with pytest.raises(ValueError, match="does not divide"):
        plan_config(cfg, d_in=2304, devices=7)
    with pytest.raises(ValueError, match="not divisible by the data axis"):
        plan_config(train.load_config(None, [*_sets("topk", 16384, 3, 1), "data.batch_size=4096"]), 2304, 3)


@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu", "batchtopk", "matryoshka"])
def test_working_set_estimate_is_close_to_xla_memory_analysis_of_the_real_step(arch) -> None:
    """Gradients + encoder temporaries vs the temporaries XLA allocates for the compiled train step (1 device)."""
    import jax
    import jax.numpy as jnp

    from saelab.train.mesh import make_mesh
    from saelab.train.placement import initial_state
    from saelab.train.step import make_train_step

    cfg = train.load_config(None, _sets(arch, 8192, 1, 1) + ["data.batch_size=2048"])
    m = plan_config(cfg, d_in=576, devices=1)
    state, tx = initial_state(m.sae, cfg, make_mesh(1, 1, jax.devices()[:1]))
    step = jax.jit(make_train_step(m.sae, tx, scale=1.0, dead_tokens=10**6, sparsity_warmup_steps=0), donate_argnums=0)
    xla = step.lower(state, jax.ShapeDtypeStruct((2048, 576), jnp.float32)).compile().memory_analysis()
    ours, theirs = m.gradients + m.activations, xla.temp_size_in_bytes
    assert 0.9 <= ours / theirs <= 1.45, f"plan {ours:,} B vs XLA temporaries {theirs:,} B"


def test_plan_takes_d_in_from_the_store_manifest(tmp_path, capsys) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.json").write_text(
        json.dumps({"format_version": 1, "hooks": ["blocks.6.hook_resid_post"], "d_model": 576})
    )
    shown = _plan_json(["--set", f"data.store='{store}'", "--set", "sae.expansion=8", "--devices", "2"], capsys)
    assert (shown["d_in"], shown["d_sae"], shown["mesh_data"]) == (576, 4608, 2)
    with pytest.raises(FileNotFoundError, match="not an activation store"):
        _plan_json(["--set", f"data.store='{tmp_path / 'none'}'", "--devices", "2"], capsys)
