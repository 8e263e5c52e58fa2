"""TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): keep the k largest
pre-activations per token (ReLU on them), trained on mse + aux_coefficient * AuxK.

`cfg.kernels` picks the sparse custom-VJP kernels of saelab.sae.sparse or plain autodiff through dense
(batch, d_sae) codes; both give the same values and gradients.
"""

from __future__ import annotations

from typing import Literal

import jax

from saelab.sae.affine import decode, encoder_inputs, matmul
from saelab.sae.auxk import aux_topk, auxk_loss
from saelab.sae.codes import TopK, densify, latent_counts
from saelab.sae.config import AuxKConfig
from saelab.sae.losses import AuxState, LossOutput, loss_output, reconstruction, zero
from saelab.sae.params import SAEParams
from saelab.sae.sparse import dense_decode, sparse_decode, topk_encode_aux
from saelab.sae.topk_select import select_top_k
from saelab.sae.transcoder import with_skip

__all__ = ["TopKConfig", "Kernels", "encode", "encode_sparse", "decode", "decode_sparse", "loss", "topk_codes"]

Kernels = Literal["sparse", "dense"]


class TopKConfig(AuxKConfig):
    """A TopK SAE (or transcoder): k latents per token, trained on mse + AuxK."""

    architecture: Literal["topk"] = "topk"
    kernels: Kernels = "sparse"
    """`sparse` uses the custom-VJP kernels of saelab.sae.sparse (backward passes touch only the k chosen
    latents); `dense` builds (batch, d_sae) codes and lets JAX differentiate."""


def encode(params: SAEParams, x: jax.Array, cfg: TopKConfig) -> jax.Array:
    """Dense codes, (batch, d_sae): k non-zero (at most) per token."""
    return densify(*encode_sparse(params, x, cfg), params.d_sae)


def encode_sparse(params: SAEParams, x: jax.Array, cfg: TopKConfig) -> TopK:
    """The k live latents per token as (vals, idx), each (batch, k)."""
    return topk_codes(params, x, cfg, None)[0]


def decode_sparse(params: SAEParams, codes: TopK, cfg: TopKConfig) -> jax.Array:
    """x_hat (batch, d_in) from (vals, idx) codes, through the kernel `cfg.kernels` selects."""
    if cfg.kernels == "sparse":
        return sparse_decode(*codes, params.W_dec, params.b_dec, compute_dtype=cfg.compute_dtype)
    return dense_decode(*codes, params.W_dec, params.b_dec, compute_dtype=cfg.compute_dtype)


def loss(params: SAEParams, x: jax.Array, cfg: TopKConfig, aux: AuxState, y: jax.Array) -> tuple[jax.Array, LossOutput]:
    """mse against y (x, or a transcoder's target) + aux_coefficient * AuxK(dead latents of aux)."""
    use_aux = cfg.aux_coefficient > 0
    codes, aux_codes = topk_codes(params, x, cfg, aux.dead_mask if use_aux else None)
    y_hat = with_skip(params, x, decode_sparse(params, codes, cfg), cfg)  # (batch, d_out)
    rec = reconstruction(y, y_hat)
    aux_loss = auxk_loss(params, aux_codes, y - y_hat, aux.dead_mask, cfg) if use_aux else zero()
    total = rec.mse + cfg.aux_coefficient * aux_loss
    counts = latent_counts(codes, params.d_sae)  # (d_sae,)
    return loss_output(total, rec, counts.sum() / x.shape[0], counts, aux_loss=aux_loss)


def topk_codes(params: SAEParams, x: jax.Array, cfg: TopKConfig, dead_mask: jax.Array | None) -> tuple[TopK, TopK]:
    """(top-k codes, AuxK codes over dead_mask) from one encoder GEMM; AuxK codes are empty without a mask."""
    xc, bias = encoder_inputs(params, x, cfg)  # (batch, d_in), (d_sae,)
    k_aux = cfg.resolved_k_aux if dead_mask is not None else 0
    if cfg.kernels == "sparse":
        dt = cfg.compute_dtype
        return topk_encode_aux(
            xc, params.W_enc, bias, cfg.k, dead_mask, k_aux, compute_dtype=dt, select=cfg.topk_select
        )
    pre = matmul(xc, params.W_enc, cfg.compute_dtype) + bias  # (batch, d_sae)
    top, idx = select_top_k(pre, cfg.k, cfg.topk_select)
    codes = TopK(jax.nn.relu(top), idx)
    if not k_aux:
        return codes, TopK(top[:, :0], idx[:, :0])
    return codes, aux_topk(pre, dead_mask, k_aux)
