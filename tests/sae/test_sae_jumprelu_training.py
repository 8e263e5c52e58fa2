"""JumpReLU training on synthetic sparse data: L0 answers its coefficient, thresholds learn in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from saelab.sae import JumpReLUConfig, SAEConfig, init_aux_state, init_params, loss

D_IN, N_FEATURES, D_SAE, BATCH, STEPS = 16, 32, 32, 256, 200


def _data() -> jax.Array:
    """Tokens made of ~3 of 32 random unit directions with exponential magnitudes, scaled to unit mean
    squared norm (the scale the default threshold and bandwidth assume)."""
    r = np.random.default_rng(0)
    feats = r.normal(size=(N_FEATURES, D_IN))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    act = (r.random((20 * BATCH, N_FEATURES)) < 3 / N_FEATURES) * r.exponential(size=(20 * BATCH, N_FEATURES))
    x = act @ feats
    x /= np.sqrt(np.mean(np.sum(x**2, axis=1)))
    return jnp.asarray(x, jnp.float32).reshape(20, BATCH, D_IN)


def _train(cfg: SAEConfig, data: jax.Array) -> tuple[float, jax.Array]:
    """Mean L0 of the last 20 steps and the final thresholds, after STEPS Adam steps."""
    params = init_params(jax.random.PRNGKey(0), cfg)
    tx = optax.adam(2e-3)
    aux = init_aux_state(D_SAE)

    @jax.jit
    def run(params):
        def body(carry, i):
            p, st = carry
            (_, out), g = jax.value_and_grad(loss, has_aux=True)(p, data[i % data.shape[0]], cfg, aux)
            updates, st = tx.update(g, st, p)
            return (optax.apply_updates(p, updates), st), out.l0

        (params, _), l0 = jax.lax.scan(body, (params, tx.init(params)), jnp.arange(STEPS))
        return params, l0

    params, l0 = run(params)
    return float(l0[-20:].mean()), params.threshold


def test_l0_answers_the_coefficient_and_thresholds_learn() -> None:
    data = _data()
    base = JumpReLUConfig(d_in=D_IN, d_sae=D_SAE)
    l0_weak, _ = _train(base.model_copy(update={"l0_coefficient": 1e-4}), data)
    l0_strong, theta = _train(base.model_copy(update={"l0_coefficient": 1e-1}), data)
    assert l0_strong < 0.7 * l0_weak, (l0_weak, l0_strong)
    assert theta.dtype == jnp.float32 and float(theta.mean()) > 20 * base.jumprelu_init_threshold
    bf16 = base.model_copy(update={"l0_coefficient": 1e-1, "compute_dtype": "bfloat16"})
    l0_bf16, theta_bf16 = _train(bf16, data)
    assert theta_bf16.dtype == jnp.float32 and float(theta_bf16.mean()) > 20 * base.jumprelu_init_threshold
    assert l0_bf16 < 0.7 * l0_weak, (l0_weak, l0_bf16)
