"""A JumpReLU (threshold) SAE trained on synthetic K-sparse data recovers the true atoms
(docs/methods.md, "Atoms": atoms are identifiable under threshold-activated SAEs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from saelab.atoms.metric import cosine
from saelab.atoms.synthetic import make_codes, make_dictionary, synthesize
from saelab.sae import JumpReLUConfig, SAEConfig, init_params, loss, unit_norm_decoder

D_IN, M_TRUE, K, N, BATCH, STEPS = 32, 48, 3, 16384, 1024, 3000


def _train(X: np.ndarray, cfg: SAEConfig, seed: int) -> jax.Array:
    """Adam on saelab.sae's jumprelu loss with unit-norm decoder rows; returns W_dec (d_sae, d_in)."""
    params = init_params(jax.random.key(seed), cfg)
    tx = unit_norm_decoder(optax.adam(3e-3))
    Xj = jnp.asarray(X)

    @jax.jit
    def train(params, opt_state):
        def step(carry, key):
            p, o = carry
            x = Xj[jax.random.randint(key, (BATCH,), 0, Xj.shape[0])]  # (batch, d_in)
            grads = jax.grad(lambda q: loss(q, x, cfg)[0])(p)
            updates, o = tx.update(grads, o, p)
            return (optax.apply_updates(p, updates), o), None

        keys = jax.random.split(jax.random.key(seed + 1), STEPS)
        return jax.lax.scan(step, (params, opt_state), keys)[0][0]

    return train(params, tx.init(params)).W_dec


@pytest.mark.parametrize("seed", [0, 1])
def test_jumprelu_sae_recovers_the_true_atoms(seed):
    D = make_dictionary(M_TRUE, D_IN, "gaussian", seed=seed)  # (48, 32): overcomplete, mu ~ 0.6
    X = synthesize(D, make_codes(N, M_TRUE, K, seed=seed + 10))  # nonneg 3-sparse codes
    X = X / np.sqrt(np.mean(np.sum(X * X, 1)))  # unit mean squared norm, the scale of Gemma Scope's recipe
    cfg = JumpReLUConfig(
        d_in=D_IN,
        d_sae=2 * M_TRUE,
        l0_coefficient=1e-2,
        bandwidth=5e-2,
        jumprelu_init_threshold=0.2,
        dec_init_norm=1.0,
    )
    before = np.abs(np.asarray(cosine(D, init_params(jax.random.key(seed), cfg).W_dec))).max(1)
    assert (before >= 0.99).mean() < 0.1  # a random decoder does not pass: the test can fail
    best = np.abs(np.asarray(cosine(D, _train(X, cfg, seed)))).max(1)  # (48,) best match of each true atom
    assert (best >= 0.99).mean() >= 0.9, f"recovered {np.sort(best)}"
