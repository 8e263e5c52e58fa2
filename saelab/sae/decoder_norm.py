"""Unit-norm decoder rows (OpenAI, Gao et al. 2024, sec. A.1; Bricken et al. 2023): remove the gradient
component parallel to each decoder row before the optimiser, and renormalise the rows after the step.

`unit_norm_decoder(tx)` wraps any optax optimiser with both, as `chain(remove_parallel, tx, renormalise)`.
The renormalisation is an update `normalise(W + u) - W`, so `optax.apply_updates` lands on unit rows.

`fold_decoder_norm` moves each decoder row's norm into the encoder after training (SAELens's `fold_W_dec_norm`),
for an SAE trained without the constraint (ReLU, JumpReLU): the same reconstruction, codes in units of unit rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from saelab.sae.params import SAEParams


def remove_parallel_grad(W_dec: jax.Array, grad: jax.Array) -> jax.Array:
    """grad minus its projection on each row of W_dec, (d_sae, d_in): the part that would change norms."""
    sq_norms = jnp.sum(jnp.square(W_dec), axis=1, keepdims=True)  # (d_sae, 1)
    parallel = jnp.sum(grad * W_dec, axis=1, keepdims=True) / jnp.maximum(sq_norms, 1e-30)
    return grad - parallel * W_dec


def normalise_decoder(W_dec: jax.Array) -> jax.Array:
    """W_dec with every row scaled to unit norm, (d_sae, d_in)."""
    return W_dec / jnp.maximum(jnp.linalg.norm(W_dec, axis=1, keepdims=True), 1e-30)


def remove_parallel_grad_transform() -> optax.GradientTransformation:
    """optax transformation applying `remove_parallel_grad` to the W_dec leaf of SAEParams updates."""

    def update(updates: SAEParams, state, params: SAEParams | None = None):
        if params is None:
            raise ValueError("remove_parallel_grad_transform needs params: tx.update(grads, state, params)")
        return updates._replace(W_dec=remove_parallel_grad(params.W_dec, updates.W_dec)), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def normalise_decoder_transform() -> optax.GradientTransformation:
    """optax transformation (last in a chain) turning the W_dec update into one that lands on unit rows."""

    def update(updates: SAEParams, state, params: SAEParams | None = None):
        if params is None:
            raise ValueError("normalise_decoder_transform needs params: call tx.update(grads, state, params)")
        target = normalise_decoder(params.W_dec + updates.W_dec)
        return updates._replace(W_dec=target - params.W_dec), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def unit_norm_decoder(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` with OpenAI's unit-norm decoder constraint around it."""
    return optax.chain(remove_parallel_grad_transform(), tx, normalise_decoder_transform())


def decoder_norm_error(W_dec: jax.Array) -> float:
    """max |norm - 1| over the decoder rows: 0 for a unit-norm decoder."""
    return float(jnp.max(jnp.abs(jnp.linalg.norm(W_dec.astype(jnp.float32), axis=1) - 1.0)))


def fold_decoder_norm(params: SAEParams) -> SAEParams:
    """Unit decoder rows with each row's norm n_i moved into latent i's encoder column, bias and threshold
    (SAELens's `fold_W_dec_norm`, norms clamped at 1e-8): `z_i -> n_i z_i`, `W_dec[i] -> W_dec[i] / n_i`.

    The reconstruction is unchanged for codes that scale with their pre-activations (ReLU, JumpReLU, a threshold
    rule); a TopK selection would change, so callers fold only architectures whose entry says `folds_decoder_norm`.
    Metrics that read code sizes against decoder directions (SAEBench's absorption, sparse probing's latent
    choice) assume unit rows, which is why SAEBench folds before it evaluates."""
    norms = jnp.maximum(jnp.linalg.norm(params.W_dec.astype(jnp.float32), axis=1), 1e-8)  # (d_sae,)
    threshold = None if params.threshold is None else (params.threshold * norms).astype(params.threshold.dtype)
    return params._replace(
        W_enc=(params.W_enc * norms).astype(params.W_enc.dtype),
        b_enc=(params.b_enc * norms).astype(params.b_enc.dtype),
        W_dec=(params.W_dec / norms[:, None]).astype(params.W_dec.dtype),
        threshold=threshold,
    )
