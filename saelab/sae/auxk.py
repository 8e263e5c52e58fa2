"""AuxK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", sec. A.2): the top k_aux dead
latents of each token reconstruct the residual `x - x_hat`, which gives dead latents a gradient.

Everything here runs on the dead columns only. They are gathered into the narrowest of k_aux, d_sae / 8,
/ 4, / 2 and d_sae that holds them (a `lax.switch` on the dead count), so the AuxK top-k, its decoder GEMM
and its encoder-gradient GEMM cost a fraction of a dense pass when few latents are dead, and nothing at all
(a `lax.cond`) when none is. When at most k_aux latents are dead, every one of them is in the top k_aux, so
that branch skips the top-k. Inside a branch, `ids` lists the dead latents and `pos` maps a dead latent to
its column among them. Codes are consumed order-free (densified), so a branch may list its slots in any
order.

The AuxK loss has its own VJP: autodiff through the `lax.switch` would save every branch's (batch, width)
intermediates as residuals, and the branches that do not run fill theirs with zeros (a (batch, width)
buffer per branch, every step, even when no latent is dead). Its backward
recomputes the branch's codes from the (batch, k_aux) codes instead.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
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


def aux_topk(pre: jax.Array | Callable[[jax.Array | None], jax.Array], dead_mask: jax.Array, k_aux: int) -> TopK:
    """ReLU of the top k_aux pre-activations among dead latents, (batch, k_aux), as global latent indices.

    Slots beyond the number of dead latents carry value 0; all zero when no latent is dead. `pre` is the
    (batch, d_sae) pre-activations, or a function of column ids (None: all) computing those columns, so that
    only the dead columns are computed (saelab.sae.sparse's screened top-k has no full pre-activations).
    """
    columns = pre if callable(pre) else lambda ids: pre if ids is None else pre[:, ids]
    batch, d_sae = jax.eval_shape(columns, None).shape

    def run(width: int) -> TopK:
        cols = dead_columns(dead_mask, width)
        sub = columns(None if width == d_sae else cols.ids)  # (batch, width)
        if width == k_aux:  # every dead latent is selected
            ids = jnp.broadcast_to(cols.ids, sub.shape)
            return TopK(jnp.where(cols.valid, jax.nn.relu(sub), 0.0), ids)
        top, j = top_k(jnp.where(cols.valid, sub, -jnp.inf), k_aux)  # (batch, k_aux)
        return TopK(jnp.where(cols.valid[j], jax.nn.relu(top), 0.0), cols.ids[j])

    empty = TopK(jnp.zeros((batch, k_aux), jnp.float32), jnp.zeros((batch, k_aux), jnp.int32))
    return on_dead_width(dead_mask, k_aux, run, empty)


def auxk_loss(params: SAEParams, aux: TopK, residual: jax.Array, dead_mask: jax.Array, cfg: SAEConfig) -> jax.Array:
    """`sum_b ||e_b - e_hat_b||^2 / sum_b ||e_b||^2`, e = stop_gradient(x - x_hat), e_hat the aux codes
    decoded without b_dec: the aux mse over the mse of predicting zero (the paper's normalisation, taken
    over the batch); 0 when no latent is dead."""
    e = jax.lax.stop_gradient(residual.astype(jnp.float32))  # (batch, d_in)
    return _auxk_mse(cfg.compute_dtype, aux.vals, aux.idx, params.W_dec, e, dead_mask)


def _aux_reconstruction(dt: ComputeDtype, vals, idx, W_dec, dead_mask, width: int):
    """(codes (batch, width), the dead rows of W_dec (width, d_in), e_hat (batch, d_in)) of one branch."""
    cols = dead_columns(dead_mask, width)
    codes = densify(vals, cols.pos[idx], width)
    W = W_dec if width == W_dec.shape[0] else W_dec[cols.ids]
    return cols, codes, W, matmul(codes, W, dt)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _auxk_mse(dt, vals, idx, W_dec, e, dead_mask):
    return _auxk_fwd(dt, vals, idx, W_dec, e, dead_mask)[0]


def _auxk_fwd(dt, vals, idx, W_dec, e, dead_mask):
    denom = jnp.maximum(jnp.sum(jnp.square(e)), 1e-30)

    def run(width: int) -> jax.Array:
        e_hat = _aux_reconstruction(dt, vals, idx, W_dec, dead_mask, width)[3]
        return jnp.sum(jnp.square(e - e_hat)) / denom

    loss = on_dead_width(dead_mask, vals.shape[1], run, jnp.zeros((), jnp.float32))
    return loss, (vals, idx, W_dec, e, dead_mask)


def _auxk_bwd(dt, res, g):
    vals, idx, W_dec, e, dead_mask = res
    denom = jnp.maximum(jnp.sum(jnp.square(e)), 1e-30)

    def run(width: int) -> tuple[jax.Array, jax.Array]:
        cols, codes, W, e_hat = _aux_reconstruction(dt, vals, idx, W_dec, dead_mask, width)
        g_hat = (-2.0 * g / denom) * (e - e_hat)  # (batch, d_in) cotangent of e_hat
        dvals = jnp.take_along_axis(matmul(g_hat, W.T, dt), cols.pos[idx], axis=1)  # (batch, k_aux)
        dW = matmul(codes.T, g_hat, dt)  # (width, d_in)
        if width != W_dec.shape[0]:
            dW = jnp.zeros(W_dec.shape, jnp.float32).at[cols.ids].add(dW)
        return dvals, dW.astype(W_dec.dtype)

    empty = (jnp.zeros_like(vals), jnp.zeros_like(W_dec))
    dvals, dW = on_dead_width(dead_mask, vals.shape[1], run, empty)
    return dvals, None, dW, None, None


_auxk_mse.defvjp(_auxk_fwd, _auxk_bwd)


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
    """`fn(width)` for the narrowest width in {k_aux, d_sae/8, /4, /2, d_sae} (at least k_aux) holding every
    dead latent; `empty` when none is dead."""
    d_sae = dead_mask.shape[0]
    widths = sorted({min(d_sae, max(k_aux, d_sae >> s)) for s in (3, 2, 1, 0)} | {min(k_aux, d_sae)})
    n_dead = dead_mask.sum()
    branch = jnp.searchsorted(jnp.asarray(widths), n_dead)
    live = lambda: jax.lax.switch(branch, [lambda w=w: fn(w) for w in widths])
    return jax.lax.cond(n_dead > 0, live, lambda: empty)
