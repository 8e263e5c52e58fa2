"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity with
JumpReLU Sparse Autoencoders"): `f(x) = z * 1[z > theta]` with a learned per-latent threshold theta,
trained on `mse + l0_coefficient * L0` through straight-through pseudo-derivatives (their eqs. 11-12):

    d/dtheta H(z - theta)          := -(1 / eps)     * K((z - theta) / eps)
    d/dtheta [z * H(z - theta)]    := -(theta / eps) * K((z - theta) / eps)

with the rectangle kernel K(u) = 1[|u| < 1/2] of bandwidth eps (`cfg.bandwidth`); the step passes no
gradient to z and the JumpReLU passes H(z - theta) to z, as in the paper and SAELens.

Pitfalls handled here (docs/methods.md, "SAE architectures and losses"): theta is a plain float32 parameter,
never cast to the compute dtype (bf16 thresholds stop learning) and not log-parameterised (log thresholds
barely move under Adam); bandwidth and initial threshold are in units of the scaled input (see
saelab.sae.config). theta is used as max(theta, 0) with a straight-through gradient, so a threshold pushed
below zero by an optimiser step keeps receiving the L0 gradient that pushes it back, and codes are never
negative.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
from pydantic import model_validator

from saelab.sae.affine import decode, pre_activations
from saelab.sae.config import TranscoderConfig, check_nonnegative, check_positive
from saelab.sae.losses import AuxState, LossOutput, dense_l0_and_counts, loss_output, reconstruction
from saelab.sae.params import SAEParams
from saelab.sae.transcoder import with_skip

__all__ = ["JumpReLUConfig", "encode", "decode", "loss", "jumprelu", "step", "effective_threshold"]


class JumpReLUConfig(TranscoderConfig):
    """A JumpReLU SAE (or transcoder): learned per-latent thresholds, trained on mse + an L0 penalty; the
    defaults are for inputs of unit mean squared norm (saelab.sae.config)."""

    architecture: Literal["jumprelu"] = "jumprelu"
    l0_coefficient: float = 1e-3
    """Weight lambda of the L0 penalty in mse + lambda * L0."""
    jumprelu_init_threshold: float = 1e-3
    """Initial per-latent threshold theta, in units of the scaled input (Gemma Scope: 0.001 with unit mean
    squared norm inputs; SAELens uses 0.01 with bandwidth 0.05)."""
    bandwidth: float = 1e-3
    """Width eps of the rectangle kernel of the straight-through pseudo-derivatives; must match the input scale
    (Gemma Scope: 0.001 with unit mean squared norm inputs)."""

    @model_validator(mode="after")
    def _check_jumprelu(self) -> JumpReLUConfig:
        check_nonnegative(self, "l0_coefficient")
        check_positive(self, "bandwidth")
        check_nonnegative(self, "jumprelu_init_threshold")
        return self

    def initial_threshold(self) -> float:
        """jumprelu_init_threshold, for every latent."""
        return self.jumprelu_init_threshold


def encode(params: SAEParams, x: jax.Array, cfg: JumpReLUConfig) -> jax.Array:
    """Codes `z * 1[z > theta]`, (batch, d_sae), z the float32 pre-activations."""
    pre = pre_activations(params, x, cfg)  # (batch, d_sae)
    return jumprelu(pre, effective_threshold(params), cfg.bandwidth)


def loss(
    params: SAEParams, x: jax.Array, cfg: JumpReLUConfig, aux: AuxState, y: jax.Array
) -> tuple[jax.Array, LossOutput]:
    """mse against y (x, or a transcoder's target) + l0_coefficient * sparsity_scale * L0, L0 = mean over
    tokens of the number of active latents."""
    pre = pre_activations(params, x, cfg)  # (batch, d_sae)
    theta = effective_threshold(params)  # (d_sae,) float32
    codes = jumprelu(pre, theta, cfg.bandwidth)
    y_hat = with_skip(params, x, decode(params, codes, cfg.compute_dtype), cfg)  # (batch, d_out)
    rec = reconstruction(y, y_hat)
    l0_train = step(pre, theta, cfg.bandwidth).sum(1).mean()
    sparsity = cfg.l0_coefficient * aux.sparsity_scale * l0_train
    total = rec.mse + sparsity
    l0, counts = dense_l0_and_counts(codes)
    return loss_output(total, rec, l0, counts, sparsity_loss=sparsity)


def effective_threshold(params: SAEParams) -> jax.Array:
    """max(theta, 0) in value, identity in gradient; float32 whatever the compute dtype, (d_sae,)."""
    theta = params.threshold.astype(jnp.float32)
    return theta + jax.lax.stop_gradient(jnp.maximum(theta, 0.0) - theta)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def jumprelu(z: jax.Array, theta: jax.Array, bandwidth: float) -> jax.Array:
    """z * 1[z > theta]; z: (batch, d_sae), theta: (d_sae,)."""
    return z * (z > theta)


def _jumprelu_fwd(z, theta, bandwidth):
    return jumprelu(z, theta, bandwidth), (z, theta)


def _jumprelu_bwd(bandwidth, res, g):
    z, theta = res
    dtheta = -(theta / bandwidth) * _rectangle((z - theta) / bandwidth) * g  # (batch, d_sae)
    return g * (z > theta), dtheta.sum(0)


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def step(z: jax.Array, theta: jax.Array, bandwidth: float) -> jax.Array:
    """Heaviside H(z - theta) as float32; z: (batch, d_sae), theta: (d_sae,)."""
    return (z > theta).astype(jnp.float32)


def _step_fwd(z, theta, bandwidth):
    return step(z, theta, bandwidth), (z, theta)


def _step_bwd(bandwidth, res, g):
    z, theta = res
    dtheta = -(1.0 / bandwidth) * _rectangle((z - theta) / bandwidth) * g  # (batch, d_sae)
    return jnp.zeros_like(z), dtheta.sum(0)


step.defvjp(_step_fwd, _step_bwd)


def _rectangle(u: jax.Array) -> jax.Array:
    return (jnp.abs(u) < 0.5).astype(jnp.float32)
