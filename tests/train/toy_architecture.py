"""A toy SAE architecture that lives outside saelab: ReLU codes with a plain (unweighted) L1 penalty,
meant for a unit-norm decoder. tests/train/test_toy_architecture.py registers it with one line and runs it
through train, export, plan, atoms and inspect, which shows an architecture needs nothing but this file."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from saelab.sae import AuxState, LossOutput, SAEConfig, SAEParams, decode, pre_activations
from saelab.sae.losses import dense_l0_and_counts, nan, reconstruction, zero

__all__ = ["ToyConfig", "encode", "decode", "loss"]


class ToyConfig(SAEConfig):
    """The toy's fields: the shared ones and its L1 coefficient (no transcoder fields: it has no target)."""

    architecture: Literal["toy"] = "toy"
    l1_coefficient: float = 1.0
    """Weight of the plain L1 penalty."""


def encode(params: SAEParams, x: jax.Array, cfg: ToyConfig) -> jax.Array:
    """Codes ReLU(pre-activations), (batch, d_sae)."""
    return jax.nn.relu(pre_activations(params, x, cfg))


def loss(params: SAEParams, x: jax.Array, cfg: ToyConfig, aux: AuxState, y: jax.Array) -> tuple[jax.Array, LossOutput]:
    """mse + l1_coefficient * sparsity_scale * mean_b sum_i |f_bi| (no decoder-norm weight: rows stay unit)."""
    codes = encode(params, x, cfg)  # (batch, d_sae)
    rec = reconstruction(y, decode(params, codes, cfg.compute_dtype))
    sparsity = cfg.l1_coefficient * aux.sparsity_scale * jnp.abs(codes).sum(axis=1).mean()
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
