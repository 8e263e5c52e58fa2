"""Matryoshka SAE (Bussmann et al. 2025, "Learning Multi-Level Features with Matryoshka Sparse
Autoencoders"; Nabeshima 2024): nested dictionaries trained together. With prefixes m_1 < ... < m_P = d_sae,
the codes of one TopK or BatchTopK pass (`cfg.matryoshka_base`) reconstruct x from latents < m_p alone:

    loss = mean_p mse(x, codes[:, :m_p] @ W_dec[:m_p] + b_dec) + aux_coefficient * AuxK

We take the mean over prefixes rather than the paper's sum, so the loss has the scale of a plain SAE's mse
and the AuxK coefficient keeps its meaning; the gradient direction is the same. AuxK reconstructs the
residual of the full-width reconstruction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from saelab.sae import batchtopk, losses, topk
from saelab.sae.affine import decode, matmul
from saelab.sae.auxk import aux_topk, auxk_loss
from saelab.sae.codes import densify, latent_counts
from saelab.sae.config import SAEConfig
from saelab.sae.losses import AuxState, LossOutput
from saelab.sae.params import SAEParams
from saelab.sae.sparse import sparse_decode_prefixes
from saelab.sae.transcoder import target_of, with_skip

__all__ = ["encode", "decode", "loss", "update_threshold", "decode_prefixes", "initial_threshold", "saelens_name"]


def encode(params: SAEParams, x: jax.Array, cfg: SAEConfig) -> jax.Array:
    """Inference codes of the base rule, (batch, d_sae): TopK per token, or the BatchTopK threshold."""
    if cfg.matryoshka_base == "topk":
        return topk.encode(params, x, cfg)
    return batchtopk.encode(params, x, cfg)


def loss(
    params: SAEParams,
    x: jax.Array,
    cfg: SAEConfig,
    aux_state: AuxState | None = None,
    target: jax.Array | None = None,
) -> tuple[jax.Array, LossOutput]:
    """Mean over prefixes of the prefix mse (against `target` for a transcoder, the skip term in every prefix),
    + aux_coefficient * AuxK on the full reconstruction."""
    aux_state = losses.resolve_aux_state(aux_state, params.d_sae)
    dead = aux_state.dead_mask if cfg.aux_coefficient > 0 else None
    if cfg.matryoshka_base == "topk":
        codes, aux = topk.topk_codes(params, x, cfg, dead)
        if cfg.kernels == "sparse":
            prefixes, dt = cfg.resolved_prefixes, cfg.compute_dtype
            x_hats = sparse_decode_prefixes(*codes, params.W_dec, params.b_dec, prefixes, compute_dtype=dt)
        else:
            x_hats = decode_prefixes(params, densify(codes.vals, codes.idx, params.d_sae), cfg)
        counts = latent_counts(codes, params.d_sae)
        l0, batch_threshold = counts.sum() / x.shape[0], losses.nan()
    else:
        enc = batchtopk.encode_train(params, x, cfg)
        x_hats = decode_prefixes(params, enc.codes, cfg)
        aux = aux_topk(enc.pre, dead, cfg.resolved_k_aux) if dead is not None else None
        l0, counts = losses.dense_l0_and_counts(enc.codes)
        batch_threshold = enc.batch_threshold
    y = target_of(x, target, params)  # (batch, d_out)
    x_hats = with_skip(params, x, x_hats, cfg)  # (n_prefixes, batch, d_out)
    prefix_mse = jnp.stack([losses.reconstruction(y, xh).mse for xh in x_hats])  # (n_prefixes,)
    rec = losses.reconstruction(y, x_hats[-1])
    aux_loss = auxk_loss(params, aux, y - x_hats[-1], dead, cfg) if dead is not None else losses.zero()
    total = prefix_mse.mean() + cfg.aux_coefficient * aux_loss
    return losses.loss_output(
        total, rec, l0, counts, aux_loss=aux_loss, batch_threshold=batch_threshold, prefix_mse=prefix_mse
    )


def decode_prefixes(params: SAEParams, codes: jax.Array, cfg: SAEConfig) -> jax.Array:
    """Dense prefix reconstructions, (n_prefixes, batch, d_in), for the cost of one full decode:
    each block of latents [m_{p-1}, m_p) is decoded once and the blocks are cumulated."""
    blocks = zip((0, *cfg.resolved_prefixes[:-1]), cfg.resolved_prefixes, strict=True)
    parts = [matmul(codes[:, a:b], params.W_dec[a:b], cfg.compute_dtype) for a, b in blocks]  # (batch, d_in)
    return jnp.cumsum(jnp.stack(parts), axis=0) + params.b_dec


def update_threshold(params: SAEParams, out: LossOutput, cfg: SAEConfig) -> SAEParams:
    """The BatchTopK threshold EMA when the base is batchtopk; params unchanged over topk."""
    if cfg.matryoshka_base == "batchtopk":
        return batchtopk.update_threshold(params, out, cfg)
    return params


def initial_threshold(cfg: SAEConfig) -> float | None:
    """0 over batchtopk (where the threshold EMA starts, as in SAELens); no threshold over topk."""
    return 0.0 if cfg.matryoshka_base == "batchtopk" else None


def saelens_name(cfg: SAEConfig) -> str:
    """The base's SAELens export: JumpReLU (the shared threshold) over batchtopk, TopK over topk."""
    return "jumprelu" if cfg.matryoshka_base == "batchtopk" else "topk"
