"""ReLU SAE with an L1 penalty (Bricken et al. 2023, "Towards Monosemanticity"), the L1 term weighted by
decoder row norms as in Anthropic's April 2024 update and SAELens' "standard" SAE:

    loss = mse + l1_coefficient * mean_b sum_i |f_bi| * ||W_dec[i]||

Weighting by the norm stops the optimiser from shrinking codes while growing decoder rows, so the decoder
need not be held at unit norm.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from pydantic import model_validator

from saelab.sae.affine import decode, pre_activations
from saelab.sae.config import TranscoderConfig, check_nonnegative
from saelab.sae.losses import AuxState, LossOutput, dense_l0_and_counts, loss_output, reconstruction
from saelab.sae.params import SAEParams
from saelab.sae.transcoder import with_skip

__all__ = ["ReLUConfig", "encode", "decode", "loss"]


class ReLUConfig(TranscoderConfig):
    """A ReLU SAE (or transcoder) trained on mse + a decoder-norm-weighted L1 penalty."""

    architecture: Literal["relu"] = "relu"
    l1_coefficient: float = 1.0
    """Weight of the decoder-norm-weighted L1 penalty sum_i |f_i| * ||W_dec[i]|| (SAELens default)."""

    @model_validator(mode="after")
    def _check_l1(self) -> ReLUConfig:
        check_nonnegative(self, "l1_coefficient")
        return self


def encode(params: SAEParams, x: jax.Array, cfg: ReLUConfig) -> jax.Array:
    """Codes ReLU(pre-activations), (batch, d_sae)."""
    return jax.nn.relu(pre_activations(params, x, cfg))


def loss(params: SAEParams, x: jax.Array, cfg: ReLUConfig, aux: AuxState, y: jax.Array) -> tuple[jax.Array, LossOutput]:
    """mse against y (x, or a transcoder's target) + l1_coefficient * sparsity_scale * decoder-norm-weighted L1."""
    codes = encode(params, x, cfg)  # (batch, d_sae)
    y_hat = with_skip(params, x, decode(params, codes, cfg.compute_dtype), cfg)  # (batch, d_out)
    rec = reconstruction(y, y_hat)
    dec_norms = jnp.linalg.norm(params.W_dec, axis=1)  # (d_sae,)
    l1 = jnp.sum(jnp.abs(codes) * dec_norms, axis=1).mean()
    sparsity = cfg.l1_coefficient * aux.sparsity_scale * l1
    total = rec.mse + sparsity
    l0, counts = dense_l0_and_counts(codes)
    return loss_output(total, rec, l0, counts, sparsity_loss=sparsity)
