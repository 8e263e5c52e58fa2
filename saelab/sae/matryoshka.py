"""Matryoshka SAE (Bussmann et al. 2025, "Learning Multi-Level Features with Matryoshka Sparse
Autoencoders"; Nabeshima 2024): nested dictionaries trained together. With prefixes m_1 < ... < m_P = d_sae,
the codes of one TopK or BatchTopK pass (`cfg.matryoshka_base`) reconstruct x from latents < m_p alone:

    loss = mean_p mse(x, codes[:, :m_p] @ W_dec[:m_p] + b_dec) + aux_coefficient * AuxK

We take the mean over prefixes rather than the paper's sum, so the loss has the scale of a plain SAE's mse
and the AuxK coefficient keeps its meaning; the gradient direction is the same. AuxK reconstructs the
residual of the full-width reconstruction.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from pydantic import model_validator

import saelab.sae.batchtopk as batchtopk
import saelab.sae.topk as topk
from saelab.sae.affine import decode, matmul
from saelab.sae.auxk import aux_topk, auxk_loss
from saelab.sae.codes import densify, latent_counts
from saelab.sae.losses import AuxState, LossOutput, dense_l0_and_counts, loss_output, nan, reconstruction, zero
from saelab.sae.params import SAEParams
from saelab.sae.sparse import sparse_decode_prefixes
from saelab.sae.transcoder import with_skip

__all__ = ["MatryoshkaConfig", "encode", "decode", "loss", "update_threshold", "decode_prefixes", "saelens_name"]


class MatryoshkaConfig(topk.TopKConfig):
    """A Matryoshka SAE (or transcoder): nested prefix losses over the codes of a topk or batchtopk pass."""

    architecture: Literal["matryoshka"] = "matryoshka"
    matryoshka_base: Literal["topk", "batchtopk"] = "batchtopk"
    """The sparsity rule whose codes the nested losses share (`kernels` applies over topk)."""
    matryoshka_prefixes: tuple[int, ...] | None = None
    """Strictly increasing prefix sizes ending at d_sae; None means (d_sae / 8, d_sae / 4, d_sae / 2, d_sae)."""
    threshold_ema_rate: float = 0.01
    """Over batchtopk: rate of the EMA of the smallest kept activation that becomes the shared inference
    threshold (as BatchTopKConfig's)."""

    @model_validator(mode="after")
    def _check_matryoshka(self) -> MatryoshkaConfig:
        batchtopk.check_ema_rate(self.threshold_ema_rate)
        if self.matryoshka_prefixes is not None:
            _check_prefixes(self.matryoshka_prefixes, self.d_sae)
        elif self.d_sae < 8:
            raise ValueError(f"default matryoshka prefixes need d_sae >= 8, got {self.d_sae}; set them")
        return self

    @property
    def resolved_prefixes(self) -> tuple[int, ...]:
        """Prefix sizes with the default resolved."""
        if self.matryoshka_prefixes is not None:
            return self.matryoshka_prefixes
        return (self.d_sae // 8, self.d_sae // 4, self.d_sae // 2, self.d_sae)

    def initial_threshold(self) -> float | None:
        """0 over batchtopk (where the threshold EMA starts, as in SAELens); no threshold over topk."""
        return 0.0 if self.matryoshka_base == "batchtopk" else None


def encode(params: SAEParams, x: jax.Array, cfg: MatryoshkaConfig) -> jax.Array:
    """Inference codes of the base rule, (batch, d_sae): TopK per token, or the BatchTopK threshold."""
    if cfg.matryoshka_base == "topk":
        return topk.encode(params, x, cfg)
    return batchtopk.encode(params, x, cfg)


def loss(
    params: SAEParams, x: jax.Array, cfg: MatryoshkaConfig, aux: AuxState, y: jax.Array
) -> tuple[jax.Array, LossOutput]:
    """Mean over prefixes of the prefix mse against y (x, or a transcoder's target; the skip term in every
    prefix), + aux_coefficient * AuxK on the full reconstruction."""
    dead = aux.dead_mask if cfg.aux_coefficient > 0 else None
    if cfg.matryoshka_base == "topk":
        codes, aux_codes = topk.topk_codes(params, x, cfg, dead)
        if cfg.kernels == "sparse":
            prefixes, dt = cfg.resolved_prefixes, cfg.compute_dtype
            x_hats = sparse_decode_prefixes(*codes, params.W_dec, params.b_dec, prefixes, compute_dtype=dt)
        else:
            x_hats = decode_prefixes(params, densify(codes.vals, codes.idx, params.d_sae), cfg)
        counts = latent_counts(codes, params.d_sae)
        l0, batch_threshold = counts.sum() / x.shape[0], nan()
    else:
        enc = batchtopk.encode_train(params, x, cfg)
        x_hats = decode_prefixes(params, enc.codes, cfg)
        aux_codes = aux_topk(enc.pre, dead, cfg.resolved_k_aux) if dead is not None else None
        l0, counts = dense_l0_and_counts(enc.codes)
        batch_threshold = enc.batch_threshold
    x_hats = with_skip(params, x, x_hats, cfg)  # (n_prefixes, batch, d_out)
    prefix_mse = jnp.stack([reconstruction(y, xh).mse for xh in x_hats])  # (n_prefixes,)
    rec = reconstruction(y, x_hats[-1])
    aux_loss = auxk_loss(params, aux_codes, y - x_hats[-1], dead, cfg) if dead is not None else zero()
    total = prefix_mse.mean() + cfg.aux_coefficient * aux_loss
    return loss_output(
        total, rec, l0, counts, aux_loss=aux_loss, batch_threshold=batch_threshold, prefix_mse=prefix_mse
    )


def decode_prefixes(params: SAEParams, codes: jax.Array, cfg: MatryoshkaConfig) -> jax.Array:
    """Dense prefix reconstructions, (n_prefixes, batch, d_in), for the cost of one full decode:
    each block of latents [m_{p-1}, m_p) is decoded once and the blocks are cumulated."""
    blocks = zip((0, *cfg.resolved_prefixes[:-1]), cfg.resolved_prefixes, strict=True)
    parts = [matmul(codes[:, a:b], params.W_dec[a:b], cfg.compute_dtype) for a, b in blocks]  # (batch, d_in)
    return jnp.cumsum(jnp.stack(parts), axis=0) + params.b_dec


def update_threshold(params: SAEParams, out: LossOutput, cfg: MatryoshkaConfig) -> SAEParams:
    """The BatchTopK threshold EMA when the base is batchtopk; params unchanged over topk."""
    if cfg.matryoshka_base == "batchtopk":
        return batchtopk.ema_threshold(params, out, cfg.threshold_ema_rate)
    return params


def saelens_name(cfg: MatryoshkaConfig) -> str:
    """The base's SAELens export: JumpReLU (the shared threshold) over batchtopk, TopK over topk."""
    return "jumprelu" if cfg.matryoshka_base == "batchtopk" else "topk"


def _check_prefixes(prefixes: tuple[int, ...], d_sae: int) -> None:
    if len(prefixes) == 0:
        raise ValueError("matryoshka_prefixes must not be empty")
    if prefixes[0] < 1:
        raise ValueError(f"matryoshka_prefixes must be positive, got {list(prefixes)}")
    if any(b <= a for a, b in zip(prefixes, prefixes[1:], strict=False)):
        raise ValueError(f"matryoshka_prefixes must be strictly increasing, got {list(prefixes)}")
    if prefixes[-1] != d_sae:
        raise ValueError(f"matryoshka_prefixes must end at d_sae={d_sae}, got {list(prefixes)}")
