"""The train step weighs AuxK as Gao et al. do against the reconstruction: alpha times the normalised AuxK mse
times the batch's total variance (the normaliser of saelab's plain mse). Without that factor AuxK was ~d times
weaker than the paper's ratio and dead latents stayed dead on synthetic worlds (docs/synth.md)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.sae import AuxState, init_params, loss, sae_config
from saelab.train.config import OptimConfig
from saelab.train.state import init_state, make_optimizer
from saelab.train.step import make_train_step


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "matryoshka"])
def test_step_objective_scales_auxk_by_the_batch_variance(architecture):
    cfg = sae_config(architecture=architecture, d_in=16, d_sae=64, k=4)
    params = init_params(jax.random.key(0), cfg)
    x = jax.random.normal(jax.random.key(1), (128, 16)) * 3.0 + 1.0
    tx = make_optimizer(OptimConfig(), steps=10, unit_norm=True)
    state = init_state(params, tx, jax.random.key(2))
    dead = jnp.arange(64) % 2 == 0  # half the latents dead
    state = state._replace(since_fired=jnp.where(dead, 10**6, 0).astype(jnp.int32))
    step = make_train_step(cfg, tx, scale=1.0, dead_tokens=1000, sparsity_warmup_steps=0)
    _, metrics = jax.jit(step)(state, x)
    total, out = loss(params, x, cfg, AuxState(dead, jnp.float32(1.0)))
    var = float(jnp.sum((x - x.mean(0)) ** 2) / x.shape[0])
    assert float(out.aux_loss) > 0
    # the architecture's loss carries alpha * aux; the step adds (var - 1) * alpha * aux on top
    want = float(total) + cfg.aux_coefficient * (var - 1.0) * float(out.aux_loss)
    assert float(metrics["loss"]) == pytest.approx(want, rel=1e-5)
    assert var > 10  # the factor matters here: AuxK weighs var times more than the loss alone gives it
    np.testing.assert_array_equal(np.asarray(metrics["aux_loss"]), np.asarray(out.aux_loss))
