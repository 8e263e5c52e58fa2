"""AuxK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", sec. A.2): the top k_aux dead
latents of each token reconstruct the residual `x - x_hat`, which gives dead latents a gradient.

Everything here runs on the dead columns only. They are gathered into the narrowest of d_sae / 8, / 4,
/ 2 and d_sae that holds them (a `lax.switch` on the dead count), so the AuxK top-k, its decoder GEMM and
its encoder-gradient GEMM cost a fraction of a dense pass when few latents are dead, and nothing at all
(a `lax.cond`) when none is. Inside a branch, `ids` lists the dead latents and `pos` maps a dead latent
to its column among them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from saelab.sae.affine import matmul
from saelab.sae.codes import TopK, densify, top_k
from saelab.sae.config import ComputeDtype, SAEConfig
from saelab.sae.params import SAEParams

T = TypeVar("T")


class DeadColumns(NamedTuple):
    ids: jax.Array  # (width,) int32 dead latents first, then fill
    valid: jax.Array  # (width,) bool: ids[i] is a dead latent
    pos: jax.Array  # (d_sae,) int32 column of each dead latent among ids (clipped garbage elsewhere)


def aux_topk(pre: jax.Array, dead_mask: jax.Array, k_aux: int) -> TopK:
    """ReLU of the top k_aux pre-activations among dead latents, (batch, k_aux), as global latent indices.

    Slots beyond the number of dead latents carry value 0; all zero when no latent is dead.
    """
    batch = pre.shape[0]

    def run(width: int) -> TopK:
        cols = dead_columns(dead_mask, width)
        sub = pre if width == pre.shape[1] else pre[:, cols.ids]  # (batch, width)
        top, j = top_k(jnp.where(cols.valid, sub, -jnp.inf), k_aux)  # (batch, k_aux)
        return TopK(jnp.where(cols.valid[j], jax.nn.relu(top), 0.0), cols.ids[j])

    empty = TopK(jnp.zeros((batch, k_aux), pre.dtype), jnp.zeros((batch, k_aux), jnp.int32))
    return on_dead_width(dead_mask, k_aux, run, empty)


def auxk_loss(params: SAEParams, aux: TopK, residual: jax.Array, dead_mask: jax.Array, cfg: SAEConfig) -> jax.Array:
    """`sum_b ||e_b - e_hat_b||^2 / sum_b ||e_b||^2`, e = stop_gradient(x - x_hat), e_hat the aux codes
    decoded without b_dec: the aux mse over the mse of predicting zero (the paper's normalisation, taken
    over the batch); 0 when no latent is dead."""
    e = jax.lax.stop_gradient(residual.astype(jnp.float32))  # (batch, d_in)

    def run(width: int) -> jax.Array:
        cols = dead_columns(dead_mask, width)
        codes = densify(aux.vals, cols.pos[aux.idx], width)  # (batch, width)
        W = params.W_dec if width == params.d_sae else params.W_dec[cols.ids]  # (width, d_in)
        e_hat = matmul(codes, W, cfg.compute_dtype)  # (batch, d_in)
        return jnp.sum(jnp.square(e - e_hat)) / jnp.maximum(jnp.sum(jnp.square(e)), 1e-30)

    return on_dead_width(dead_mask, aux.vals.shape[1], run, jnp.zeros((), jnp.float32))


def aux_encoder_grad(
    x: jax.Array, g: jax.Array, aux: TopK, dead_mask: jax.Array, compute_dtype: ComputeDtype
) -> tuple[jax.Array, jax.Array]:
    """(dW_enc (d_in, d_sae), db_enc (d_sae,)) from cotangents g (batch, k_aux) of the aux codes: one GEMM
    over the dead columns, `x.T @ dpre_dead`; k_aux (~d_in / 2) is too wide for a scatter to pay off."""
    d_in, d_sae = x.shape[1], dead_mask.shape[0]

    def run(width: int) -> tuple[jax.Array, jax.Array]:
        cols = dead_columns(dead_mask, width)
        dpre = densify(g * (aux.vals > 0), cols.pos[aux.idx], width)  # (batch, width)
        dW = matmul(x.T, dpre, compute_dtype)  # (d_in, width)
        if width == d_sae:
            return dW, dpre.sum(0)
        zeros_w, zeros_b = jnp.zeros((d_in, d_sae), jnp.float32), jnp.zeros((d_sae,), jnp.float32)
        return zeros_w.at[:, cols.ids].add(dW), zeros_b.at[cols.ids].add(dpre.sum(0))

    empty = (jnp.zeros((d_in, d_sae), jnp.float32), jnp.zeros((d_sae,), jnp.float32))
    return on_dead_width(dead_mask, aux.vals.shape[1], run, empty)


def dead_columns(dead_mask: jax.Array, width: int) -> DeadColumns:
    """The dead latents packed into `width` columns (width >= their count; all columns when d_sae)."""
    d_sae = dead_mask.shape[0]
    if width == d_sae:
        return DeadColumns(jnp.arange(d_sae, dtype=jnp.int32), dead_mask, jnp.arange(d_sae, dtype=jnp.int32))
    ids = jnp.nonzero(dead_mask, size=width, fill_value=0)[0].astype(jnp.int32)
    valid = jnp.arange(width) < dead_mask.sum()
    pos = jnp.clip(jnp.cumsum(dead_mask) - 1, 0, width - 1).astype(jnp.int32)
    return DeadColumns(ids, valid, pos)


def on_dead_width(dead_mask: jax.Array, k_aux: int, fn: Callable[[int], T], empty: T) -> T:
    """`fn(width)` for the narrowest width in {d_sae/8, /4, /2, d_sae} (at least k_aux) holding every dead
    latent; `empty` when none is dead."""
    d_sae = dead_mask.shape[0]
    widths = sorted({min(d_sae, max(k_aux, d_sae >> s)) for s in (3, 2, 1, 0)})
    n_dead = dead_mask.sum()
    branch = jnp.searchsorted(jnp.asarray(widths), n_dead)
    live = lambda: jax.lax.switch(branch, [lambda w=w: fn(w) for w in widths])
    return jax.lax.cond(n_dead > 0, live, lambda: empty)
