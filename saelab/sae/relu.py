"""ReLU SAE with an L1 penalty (Bricken et al. 2023, "Towards Monosemanticity"), the L1 term weighted by
decoder row norms as in Anthropic's April 2024 update and SAELens' "standard" SAE:

    loss = mse + l1_coefficient * mean_b sum_i |f_bi| * ||W_dec[i]||

Weighting by the norm stops the optimiser from shrinking codes while growing decoder rows, so the decoder
need not be held at unit norm.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from saelab.sae import losses
from saelab.sae.affine import decode, pre_activations
from saelab.sae.config import SAEConfig
from saelab.sae.losses import AuxState, LossOutput
from saelab.sae.params import SAEParams
from saelab.sae.transcoder import target_of, with_skip

__all__ = ["encode", "decode", "loss"]


def encode(params: SAEParams, x: jax.Array, cfg: SAEConfig) -> jax.Array:
    """Codes ReLU(pre-activations), (batch, d_sae)."""
    return jax.nn.relu(pre_activations(params, x, cfg))


def loss(
    params: SAEParams,
    x: jax.Array,
    cfg: SAEConfig,
    aux_state: AuxState | None = None,
    target: jax.Array | None = None,
) -> tuple[jax.Array, LossOutput]:
    """mse (against `target` for a transcoder) + l1_coefficient * sparsity_scale * decoder-norm-weighted L1."""
    aux_state = losses.resolve_aux_state(aux_state, params.d_sae)
    codes = encode(params, x, cfg)  # (batch, d_sae)
    y = target_of(x, target, params)  # (batch, d_out)
    y_hat = with_skip(params, x, decode(params, codes, cfg.compute_dtype), cfg)  # (batch, d_out)
    rec = losses.reconstruction(y, y_hat)
    dec_norms = jnp.linalg.norm(params.W_dec, axis=1)  # (d_sae,)
    l1 = jnp.sum(jnp.abs(codes) * dec_norms, axis=1).mean()
    sparsity = cfg.l1_coefficient * aux_state.sparsity_scale * l1
    total = rec.mse + sparsity
    l0, counts = losses.dense_l0_and_counts(codes)
    return losses.loss_output(total, rec, l0, counts, sparsity_loss=sparsity)
