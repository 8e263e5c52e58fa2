"""A toy SAE architecture that lives outside saelab: ReLU codes with a plain (unweighted) L1 penalty,
meant for a unit-norm decoder. tests/train/test_toy_architecture.py registers it with one line and runs it
through train, export, plan, atoms and inspect, which shows an architecture needs nothing but this file."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from saelab.sae import AuxState, LossOutput, SAEConfig, SAEParams, decode, pre_activations
from saelab.sae.losses import dense_l0_and_counts, nan, reconstruction, resolve_aux_state, zero

__all__ = ["encode", "decode", "loss"]


def encode(params: SAEParams, x: jax.Array, cfg: SAEConfig) -> jax.Array:
    """Codes ReLU(pre-activations), (batch, d_sae)."""
    return jax.nn.relu(pre_activations(params, x, cfg))


def loss(
    params: SAEParams, x: jax.Array, cfg: SAEConfig, aux_state: AuxState | None = None
) -> tuple[jax.Array, LossOutput]:
    """mse + l1_coefficient * sparsity_scale * mean_b sum_i |f_bi| (no decoder-norm weight: rows stay unit)."""
    aux_state = resolve_aux_state(aux_state, params.d_sae)
    codes = encode(params, x, cfg)  # (batch, d_sae)
    rec = reconstruction(x, decode(params, codes, cfg.compute_dtype))
    sparsity = cfg.l1_coefficient * aux_state.sparsity_scale * jnp.abs(codes).sum(axis=1).mean()
    l0, counts = dense_l0_and_counts(codes)
    out = LossOutput(
        loss=rec.mse + sparsity,
        mse=rec.mse,
        explained_variance=rec.explained_variance,
        nmse=rec.nmse,
        l0=l0,
        sparsity_loss=sparsity,
        aux_loss=zero(),
        latent_counts=counts,
        batch_threshold=nan(),
        prefix_mse=rec.mse[None],
    )
    return out.loss, out
