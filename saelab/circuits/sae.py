"""The small SAE of O'Neill & Bui (arXiv 2405.12522, section 3): one SAE shared by all heads, trained full
batch on the head outputs of a handful of prompts, then read out as one integer code per vector.

It is a `saelab.sae` ReLU SAE (SAEParams, its encoder and decoder, tied init with unit decoder rows and the
pre-bias at the data mean): f = ReLU((x - b_dec) W_enc + b_enc), x_hat = f W_dec + b_dec. Only the loss and
the loop are the paper's: per vector ||x - x_hat||^2 + l1 * ||f||_1, averaged over vectors, with decoder rows
renormalised to unit norm after every step (Bricken et al. 2023, `normalise_decoder_transform`) so the L1
penalty cannot be dodged by shrinking f and growing W_dec. The L1 is the plain one, not the decoder-norm
weighted one of `saelab.sae.relu.loss`: with unit rows they agree in value, but the weighted one adds a
gradient along each row that Adam would rescale before the renormalisation removes it. Holding rows at unit
norm makes `l1` a penalty relative to the input scale, which is why inputs are scaled to unit mean norm first.
Adam, one full-batch step per epoch, all epochs in one jitted `lax.scan`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from saelab.sae import ReLUConfig, SAEParams, decode, init_params, normalise_decoder_transform, relu
from saelab.sae.losses import reconstruction


class TrainResult(NamedTuple):
    sae: SAEParams  # unit-norm decoder rows, no threshold
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
    rec = reconstruction(x, decode(sae, f))
    on = f > 0
    return TrainResult(
        sae, np.asarray(loss), float(1 - rec.explained_variance), float(on.sum(-1).mean()), int(on.any(0).sum())
    )


def init_sae(key: jax.Array, x: jax.Array, latents: int) -> SAEParams:
    """saelab's tied init with unit decoder rows (random directions, W_enc their transpose, b_enc 0) and the
    pre-bias at the data mean."""
    return init_params(key, sae_config(x.shape[1], latents), b_dec=x.mean(0))


def sae_config(d_in: int, latents: int) -> ReLUConfig:
    """The ReLU SAE this method trains (unit-norm decoder rows at init)."""
    return ReLUConfig(d_in=d_in, d_sae=latents, dec_init_norm=1.0)


def encode(sae: SAEParams, x: jax.Array) -> jax.Array:
    """(n, d_in) -> (n, d_sae) latent activations, `saelab.sae.relu.encode`."""
    return relu.encode(sae, x, sae_config(sae.d_in, sae.d_sae))


def codes(sae: SAEParams, x: jax.Array) -> np.ndarray:
    """Discrete code per vector: its most active latent, or d_sae (an extra "silent" code) when none fires."""
    return as_codes(np.asarray(encode(sae, jnp.asarray(x, jnp.float32))))


def as_codes(f: np.ndarray) -> np.ndarray:
    """`codes` from latent activations f (..., d_sae) already computed."""
    return np.where(f.max(-1) > 0, f.argmax(-1), f.shape[-1])


def loss_fn(sae: SAEParams, x: jax.Array, l1: float) -> jax.Array:
    """mean over vectors of ||x - x_hat||^2 + l1 * ||f||_1 (f >= 0, so the L1 is the sum)."""
    f = encode(sae, x)
    return reconstruction(x, decode(sae, f)).mse + l1 * jnp.sum(f, -1).mean()


@functools.partial(jax.jit, static_argnames=("epochs",))
def _fit(sae: SAEParams, x: jax.Array, l1: float, lr: float, epochs: int) -> tuple[SAEParams, jax.Array]:
    opt = optax.chain(optax.adam(lr), normalise_decoder_transform())

    def step(carry, _):
        sae, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(sae, x, l1)
        updates, state = opt.update(grads, state, sae)
        return (optax.apply_updates(sae, updates), state), loss

    (sae, _), losses = jax.lax.scan(step, (sae, opt.init(sae)), None, length=epochs)
    return sae, losses
