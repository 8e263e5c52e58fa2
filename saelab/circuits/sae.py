"""The small SAE of O'Neill & Bui (arXiv 2405.12522, section 3): one SAE shared by all heads, trained full
batch on the head outputs of a handful of prompts, then read out as one integer code per vector.

f = ReLU((x - b_dec) W_enc + b_enc), x_hat = f W_dec + b_dec (tied pre-bias). Loss per vector:
||x - x_hat||^2 + l1 * ||f||_1, averaged over vectors. Decoder rows are renormalised to unit norm after every
step (Bricken et al. 2023) so the L1 penalty cannot be dodged by shrinking f and growing W_dec; that makes
`l1` a penalty relative to the input scale, which is why inputs are scaled to unit mean norm first.
Adam, all epochs in one jitted `lax.scan`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class TinySAE(NamedTuple):
    W_enc: jax.Array  # (d_in, d_sae)
    b_enc: jax.Array  # (d_sae,)
    W_dec: jax.Array  # (d_sae, d_in), unit-norm rows
    b_dec: jax.Array  # (d_in,)


class TrainResult(NamedTuple):
    sae: TinySAE
    loss: np.ndarray  # (epochs,) total loss per epoch
    mse: float  # final mean ||x - x_hat||^2 / mean ||x - mean(x)||^2 (normalised MSE against the mean)
    l0: float  # final mean number of active latents per vector
    alive: int  # latents active on at least one vector


def train_sae(
    x: np.ndarray,
    latents: int = 200,
    l1: float = 0.02,
    epochs: int = 500,
    lr: float = 1e-3,
    seed: int = 0,
) -> TrainResult:
    """Train on x: (n, d_in), already scaled. Full batch: one Adam step per epoch."""
    if x.ndim != 2:
        raise ValueError(f"x must be (n, d_in), got shape {x.shape}")
    x = jnp.asarray(x, jnp.float32)
    sae = init_sae(jax.random.PRNGKey(seed), x, latents)
    sae, loss = _fit(sae, x, l1, lr, epochs)
    f = encode(sae, x)
    mse = jnp.mean(jnp.sum((decode(sae, f) - x) ** 2, -1)) / jnp.mean(jnp.sum((x - x.mean(0)) ** 2, -1))
    on = f > 0
    return TrainResult(sae, np.asarray(loss), float(mse), float(on.sum(-1).mean()), int(on.any(0).sum()))


def init_sae(key: jax.Array, x: jax.Array, latents: int) -> TinySAE:
    """Random unit decoder rows, encoder initialised to their transpose, pre-bias at the data mean."""
    w = jax.random.normal(key, (latents, x.shape[1]))
    w = w / jnp.linalg.norm(w, axis=1, keepdims=True)
    return TinySAE(w.T, jnp.zeros(latents), w, x.mean(0))


def encode(sae: TinySAE, x: jax.Array) -> jax.Array:
    """(n, d_in) -> (n, d_sae) latent activations. (x - b_dec) W_enc is expanded so that the gradient of the
    pre-bias costs a vector-matrix product, not a second (n, d_in, d_sae) matmul."""
    return jax.nn.relu(x @ sae.W_enc - sae.b_dec @ sae.W_enc + sae.b_enc)


def decode(sae: TinySAE, f: jax.Array) -> jax.Array:
    return f @ sae.W_dec + sae.b_dec


def codes(sae: TinySAE, x: jax.Array) -> np.ndarray:
    """Discrete code per vector: its most active latent, or d_sae (an extra "silent" code) when none fires."""
    f = np.asarray(encode(sae, jnp.asarray(x, jnp.float32)))
    return np.where(f.max(-1) > 0, f.argmax(-1), f.shape[-1])


def loss_fn(sae: TinySAE, x: jax.Array, l1: float) -> jax.Array:
    f = encode(sae, x)
    return jnp.mean(jnp.sum((decode(sae, f) - x) ** 2, -1) + l1 * jnp.sum(f, -1))


@functools.partial(jax.jit, static_argnames=("epochs",))
def _fit(sae: TinySAE, x: jax.Array, l1: float, lr: float, epochs: int) -> tuple[TinySAE, jax.Array]:
    opt = optax.adam(lr)

    def step(carry, _):
        sae, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(sae, x, l1)
        updates, state = opt.update(grads, state, sae)
        sae = optax.apply_updates(sae, updates)
        sae = sae._replace(W_dec=sae.W_dec / jnp.linalg.norm(sae.W_dec, axis=1, keepdims=True))
        return (sae, state), loss

    (sae, _), losses = jax.lax.scan(step, (sae, opt.init(sae)), None, length=epochs)
    return sae, losses
