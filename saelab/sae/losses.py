"""What every SAE loss returns and shares: LossOutput, AuxState and the reconstruction metrics.

Normalisation (docs/methods.md, "Metric definitions"): `mse` is the mean over the batch of the squared error
summed over d_in, `mean_b ||x_b - x_hat_b||^2`, so it grows with the input scale and with d_in;
`explained_variance` is `1 - SSE / SST` with SST around the batch mean; `nmse` is `SSE / sum ||x||^2`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class AuxState(NamedTuple):
    """Trainer-owned inputs of a loss that are not parameters (pass the same pytree every step)."""

    dead_mask: jax.Array  # (d_sae,) bool: latents that did not fire in the trainer's window (AuxK input)
    sparsity_scale: jax.Array  # () float32 multiplier of l1/l0 coefficients, for warm-up without recompiling


class LossOutput(NamedTuple):
    """Named metrics of one loss evaluation; fields an architecture lacks are 0 (nan for batch_threshold)."""

    loss: jax.Array  # () the training objective
    mse: jax.Array  # () mean_b ||x_b - x_hat_b||^2 of the full reconstruction
    explained_variance: jax.Array  # () 1 - SSE / SST over the batch
    nmse: jax.Array  # () SSE / sum ||x||^2
    l0: jax.Array  # () mean number of non-zero latents per token
    sparsity_loss: jax.Array  # () weighted sparsity term inside `loss` (relu: L1, jumprelu: L0 penalty)
    aux_loss: jax.Array  # () unweighted AuxK loss (TopK family; 0 when no latent is dead)
    latent_counts: jax.Array  # (d_sae,) tokens of this batch on which each latent fired (dead/dense tracking)
    batch_threshold: jax.Array  # () BatchTopK: smallest positive kept activation, for the threshold EMA
    prefix_mse: jax.Array  # (n_prefixes,) matryoshka: mse of each prefix reconstruction; (1,) = mse otherwise


class Reconstruction(NamedTuple):
    mse: jax.Array  # ()
    explained_variance: jax.Array  # ()
    nmse: jax.Array  # ()


def init_aux_state(d_sae: int, sparsity_scale: float = 1.0) -> AuxState:
    """No latent dead, sparsity coefficient at full strength."""
    return AuxState(jnp.zeros((d_sae,), bool), jnp.asarray(sparsity_scale, jnp.float32))


def resolve_aux_state(aux_state: AuxState | None, d_sae: int) -> AuxState:
    """`aux_state`, or the default one when None; checks the dead mask shape."""
    if aux_state is None:
        return init_aux_state(d_sae)
    if aux_state.dead_mask.shape != (d_sae,):
        raise ValueError(f"aux_state.dead_mask must have shape ({d_sae},), got {aux_state.dead_mask.shape}")
    return aux_state


def reconstruction(x: jax.Array, x_hat: jax.Array) -> Reconstruction:
    """mse (mean over batch of the per-token squared error summed over d_in), R^2 and normalised MSE."""
    x = x.astype(jnp.float32)
    sse = jnp.sum(jnp.square(x - x_hat))
    sst = jnp.sum(jnp.square(x - x.mean(0)))
    return Reconstruction(sse / x.shape[0], 1.0 - sse / sst, sse / jnp.sum(jnp.square(x)))


def dense_l0_and_counts(codes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean non-zero latents per token, (d_sae,) tokens per latent) of dense (batch, d_sae) codes."""
    fired = (codes != 0).astype(jnp.float32)
    return fired.sum(1).mean(), fired.sum(0)


def loss_output(
    total: jax.Array,
    rec: Reconstruction,
    l0: jax.Array,
    latent_counts: jax.Array,
    *,
    sparsity_loss: jax.Array | None = None,
    aux_loss: jax.Array | None = None,
    batch_threshold: jax.Array | None = None,
    prefix_mse: jax.Array | None = None,
) -> tuple[jax.Array, LossOutput]:
    """`(total, LossOutput)` as every loss returns it; the fields an architecture does not give are 0 (nan
    for batch_threshold, the full mse as the one prefix for prefix_mse)."""
    out = LossOutput(
        loss=total,
        mse=rec.mse,
        explained_variance=rec.explained_variance,
        nmse=rec.nmse,
        l0=l0,
        sparsity_loss=zero() if sparsity_loss is None else sparsity_loss,
        aux_loss=zero() if aux_loss is None else aux_loss,
        latent_counts=latent_counts,
        batch_threshold=nan() if batch_threshold is None else batch_threshold,
        prefix_mse=rec.mse[None] if prefix_mse is None else prefix_mse,
    )
    return total, out


def zero() -> jax.Array:
    return jnp.zeros((), jnp.float32)


def nan() -> jax.Array:
    return jnp.full((), jnp.nan, jnp.float32)
