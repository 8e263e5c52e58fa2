"""`saelab train plan` on cross-layer transcoder configs: SmolLM2-135M (30 layers, d 576) on one device and a 2B
model (Gemma 2 2B: 26 layers, d 2,304) on 8 devices sharded on the latent axis; the parameter and Adam rows
equal jax.eval_shape of the CLT's real parameters and optimiser state in the shards of `clt_param_specs`."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh, NamedSharding
from jax.sharding import PartitionSpec as P

from saelab import train
from saelab.sae.clt import init_params
from saelab.train.plan import Mesh, clt_param_specs, plan_config
from saelab.train.state import make_optimizer
from tests.train.test_plan import _plan_json  # `saelab train plan ... --json` through its own parser


def _sets(n_layers: int, d_sae: int, data: int, model: int, activation: str = "topk") -> list[str]:
    return [
        "sae.architecture='clt'",
        f"sae.n_layers={n_layers}",
        f"sae.d_sae={d_sae}",
        f"sae.activation='{activation}'",
        "data.batch_size=4096",
        f"train.mesh_data={data}",
        f"train.mesh_model={model}",
    ]


def _sharded_bytes(tree, specs, mesh: AbstractMesh) -> int:
    leaves, spec_leaves = jax.tree.leaves(tree), jax.tree.leaves(specs, is_leaf=lambda s: isinstance(s, P))
    return sum(
        int(np.prod(NamedSharding(mesh, s).shard_shape(a.shape))) * a.dtype.itemsize
        for a, s in zip(leaves, spec_leaves, strict=True)
    )


@pytest.mark.parametrize(
    ("n_layers", "d_in", "d_sae", "data", "model", "activation"),
    [(30, 576, 8192, 1, 1, "topk"), (26, 2304, 16384, 1, 8, "jumprelu"), (26, 2304, 16384, 2, 4, "topk")],
)
def test_clt_plan_equals_eval_shape_of_its_sharded_state(n_layers, d_in, d_sae, data, model, activation, capsys):
    sets = _sets(n_layers, d_sae, data, model, activation)
    devices = data * model
    shown = _plan_json(["--d-in", str(d_in), "--devices", str(devices), *sum((["--set", s] for s in sets), [])], capsys)
    cfg = train.load_config(None, sets)
    sae = plan_config(cfg, d_in=d_in, devices=devices).sae
    shapes = jax.eval_shape(lambda k: init_params(k, sae), jax.random.key(0))
    opt = jax.eval_shape(make_optimizer(cfg.optim, cfg.steps, False).init, shapes)
    mesh = AbstractMesh((data, model), ("data", "model"))
    specs = clt_param_specs(n_layers)
    params = _sharded_bytes(shapes, specs if sae.uses_threshold else specs._replace(threshold=None), mesh)
    assert shown["parameters"] == params
    param_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(shapes))
    counts = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(opt)) - 2 * param_bytes  # Adam's step counts
    assert shown["Adam moments"] == 2 * params + counts
    # the decoders dominate: L (L + 1) / 2 (latents x d_out) blocks, split over the model axis
    pairs = n_layers * (n_layers + 1) // 2
    assert shown["parameters"] == pytest.approx(4 * (pairs + n_layers) * d_sae * d_in / model, rel=1e-3)
    assert shown["activation batch"] == 4 * (4096 // data) * n_layers * 2 * d_in
    assert shown["peak per device (estimate)"] > shown["train state (checkpointed)"]


def test_clt_plan_on_8_devices_is_an_eighth_of_one_and_refuses_uneven_latents() -> None:
    one = plan_config(train.load_config(None, _sets(26, 16384, 1, 1)), d_in=2304, devices=1)
    eight = plan_config(train.load_config(None, _sets(26, 16384, 1, 8)), d_in=2304, devices=8)
    assert eight.mesh == Mesh(1, 8) and eight.params == pytest.approx(one.params / 8, rel=1e-3)
    assert eight.batch == one.batch  # data-parallel degree 1: every device sees the whole batch
    with pytest.raises(ValueError, match="not divisible by the model axis"):
        plan_config(train.load_config(None, _sets(26, 16383, 1, 8)), d_in=2304, devices=8)


@pytest.mark.parametrize(
    ("activation", "n_layers", "d_in", "d_sae", "batch"),
    [("topk", 4, 128, 4096, 1024), ("jumprelu", 8, 64, 2048, 2048)],
)
def test_clt_working_set_estimate_is_close_to_xla_memory_analysis(
    activation, n_layers, d_in, d_sae, batch, monkeypatch
) -> None:
    """Gradients + temporaries of the plan vs the temporaries XLA allocates for a jitted, donated Adam step on the
    CLT's loss (1 CPU device, with dead latents so AuxK runs), with the XLA kernels that every backend runs; the
    CPU kernels (saelab.sae.cpu_kernels) need less, so the plan bounds their step from above."""
    import jax.numpy as jnp
    import optax

    from saelab.sae.losses import AuxState
    from saelab.sae.registry import loss

    sets = [*_sets(n_layers, d_sae, 1, 1, activation), f"data.batch_size={batch}"]
    m = plan_config(train.load_config(None, sets), d_in=d_in, devices=1)
    p, tx = init_params(jax.random.key(0), m.sae), optax.adam(1e-3)
    aux = AuxState(jnp.zeros((n_layers * d_sae,), bool).at[::3].set(True), jnp.ones(()))

    def step(p, s, x, y):
        g = jax.grad(lambda q: loss(q, x, m.sae, aux, y)[0])(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    rows = jax.ShapeDtypeStruct((batch, n_layers, d_in), jnp.float32)
    temps = {}
    for kernels in ("0", "1"):
        monkeypatch.setenv("SAELAB_CPU_KERNELS", kernels)
        compiled = jax.jit(lambda *a: step(*a), donate_argnums=(0, 1)).lower(p, tx.init(p), rows, rows).compile()
        temps[kernels] = compiled.memory_analysis().temp_size_in_bytes
    ours, theirs = m.gradients + m.activations, temps["0"]
    assert 0.9 <= ours / theirs <= 1.45, f"plan {ours:,} B vs XLA temporaries {theirs:,} B"
    assert temps["1"] <= ours, f"plan {ours:,} B vs the CPU kernels' temporaries {temps['1']:,} B"
