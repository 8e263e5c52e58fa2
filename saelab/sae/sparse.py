"""Sparse TopK kernels: only k latents per token are live, so the backward passes touch only those.

`topk_encode` and `sparse_decode` are `jax.custom_vjp` functions whose gradients for W_enc, b_enc and W_dec
are sums over the (batch, k) chosen entries, like the fused encoder and embedding-bag decoder of EleutherAI
sparsify and the sparse kernels of OpenAI's "Scaling and evaluating sparse autoencoders" (appendix D).
`dense_topk_encode` / `dense_decode` are the plain-autodiff twins that the tests compare against.

Weight gradients, two ways each (`encoder_grad`, `decoder_grad`):
- "segment": scatter-add the (batch * k) rows `g_bj * x_b` (encoder) or `vals_bj * dx_hat_b` (decoder)
  into the chosen latents, scanning over chunks of DEFAULT_CHUNK tokens (saelab.sae.gather) so that each
  chunk's (chunk, k, d) block stays in cache: O(batch * k * d);
- "gemm": scatter the cotangents into a dense (batch, d_sae) matrix and do one GEMM: O(batch * d_sae * d).
"segment" is the default for both, since k is much smaller than d_sae: it does less work for either weight
and makes the whole TopK train step faster. The AuxK codes (k_aux ~ d_in / 2)
take a GEMM over the dead columns (saelab.sae.auxk), not a scatter.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp

from saelab.sae import cpu_kernels
from saelab.sae.affine import matmul
from saelab.sae.auxk import aux_encoder_grad, aux_topk
from saelab.sae.codes import TopK, densify, top_k
from saelab.sae.config import ComputeDtype
from saelab.sae.gather import gather_blocks, gather_dot, gather_sum, scatter_rows
from saelab.sae.topk_select import TopKSelect, resolve, select_top_k

__all__ = [
    "topk_encode",
    "topk_encode_aux",
    "sparse_decode",
    "sparse_decode_prefixes",
    "dense_topk_encode",
    "dense_decode",
]

GradMethod = Literal["gemm", "segment"]
DEFAULT_ENCODER_GRAD: GradMethod = "segment"
DEFAULT_DECODER_GRAD: GradMethod = "segment"


def topk_encode(
    x: jax.Array,
    W_enc: jax.Array,
    b_enc: jax.Array,
    k: int,
    *,
    compute_dtype: ComputeDtype = "float32",
    encoder_grad: GradMethod = DEFAULT_ENCODER_GRAD,
) -> TopK:
    """ReLU(top_k(x @ W_enc + b_enc)) whose backward touches only the k chosen columns.

    x: (batch, d_in), W_enc: (d_in, d_sae), b_enc: (d_sae,).
    """
    dt, grad = compute_dtype, encoder_grad
    codes, _ = topk_encode_aux(x, W_enc, b_enc, k, None, 0, compute_dtype=dt, encoder_grad=grad)
    return codes


def topk_encode_aux(
    x: jax.Array,
    W_enc: jax.Array,
    b_enc: jax.Array,
    k: int,
    dead_mask: jax.Array | None,
    k_aux: int,
    *,
    compute_dtype: ComputeDtype = "float32",
    encoder_grad: GradMethod = DEFAULT_ENCODER_GRAD,
    select: TopKSelect = "auto",
) -> tuple[TopK, TopK]:
    """`topk_encode` plus the AuxK codes `aux_topk(pre, dead_mask, k_aux)` from the same GEMM; `select` picks
    how the top k are found (saelab.sae.topk_select; the same result either way)."""
    if x.ndim != 2 or W_enc.shape[0] != x.shape[1] or b_enc.shape != (W_enc.shape[1],):
        raise ValueError(f"shapes x {x.shape}, W_enc {W_enc.shape}, b_enc {b_enc.shape} do not fit together")
    if not 1 <= k <= W_enc.shape[1] or not 0 <= k_aux <= W_enc.shape[1]:
        raise ValueError(f"need 1 <= k <= d_sae and 0 <= k_aux <= d_sae, got k={k}, k_aux={k_aux}")
    if dead_mask is None or k_aux == 0:
        dead_mask, k_aux = jnp.zeros((W_enc.shape[1],), bool), 0
    how = (k, k_aux, compute_dtype, encoder_grad, select)
    vals, idx, aux_vals, aux_idx = _encode(*how, x, W_enc, b_enc, dead_mask)
    return TopK(vals, idx), TopK(aux_vals, aux_idx)


def sparse_decode(
    vals: jax.Array,
    idx: jax.Array,
    W_dec: jax.Array,
    b_dec: jax.Array,
    *,
    compute_dtype: ComputeDtype = "float32",
    decoder_grad: GradMethod = DEFAULT_DECODER_GRAD,
) -> jax.Array:
    """`sum_j vals[:, j] * W_dec[idx[:, j]] + b_dec`, (batch, d_in), in O(batch * k * d_in)."""
    _check_codes(vals, idx, W_dec, b_dec)
    prefixes = (W_dec.shape[0],)
    return _decode(prefixes, compute_dtype, decoder_grad, vals, idx, W_dec, b_dec)[0]


def sparse_decode_prefixes(
    vals: jax.Array,
    idx: jax.Array,
    W_dec: jax.Array,
    b_dec: jax.Array,
    prefixes: tuple[int, ...],
    *,
    compute_dtype: ComputeDtype = "float32",
    decoder_grad: GradMethod = DEFAULT_DECODER_GRAD,
) -> jax.Array:
    """Matryoshka reconstructions from the latents below each prefix size, (n_prefixes, batch, d_in).

    One pass for all prefixes: each slot adds to the partial sum of its prefix block and the blocks are
    cumulated; backward, a slot's cotangent is the sum of the cotangents of every prefix that contains it.
    """
    _check_codes(vals, idx, W_dec, b_dec)
    if list(prefixes) != sorted(set(prefixes)) or prefixes[0] < 1 or prefixes[-1] != W_dec.shape[0]:
        raise ValueError(f"prefixes must increase strictly from >= 1 to d_sae={W_dec.shape[0]}: {prefixes}")
    return _decode(tuple(prefixes), compute_dtype, decoder_grad, vals, idx, W_dec, b_dec)


def dense_topk_encode(
    x: jax.Array, W_enc: jax.Array, b_enc: jax.Array, k: int, *, compute_dtype: ComputeDtype = "float32"
) -> TopK:
    """Plain-autodiff reference of `topk_encode`."""
    pre = matmul(x, W_enc, compute_dtype) + b_enc  # (batch, d_sae)
    vals, idx = top_k(pre, k)
    return TopK(jax.nn.relu(vals), idx)


def dense_decode(
    vals: jax.Array,
    idx: jax.Array,
    W_dec: jax.Array,
    b_dec: jax.Array,
    *,
    compute_dtype: ComputeDtype = "float32",
) -> jax.Array:
    """Plain-autodiff reference of `sparse_decode`: densify the codes, then one GEMM."""
    return matmul(densify(vals, idx, W_dec.shape[0]), W_dec, compute_dtype) + b_dec


def _check_codes(vals: jax.Array, idx: jax.Array, W_dec: jax.Array, b_dec: jax.Array) -> None:
    if vals.ndim != 2 or vals.shape != idx.shape or b_dec.shape != (W_dec.shape[1],):
        shapes = f"vals {vals.shape}, idx {idx.shape}, W_dec {W_dec.shape}, b_dec {b_dec.shape}"
        raise ValueError(f"shapes {shapes} do not fit together")


# --- encoder kernel -----------------------------------------------------------------------------------


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _encode(k, k_aux, compute_dtype, encoder_grad, select, x, W_enc, b_enc, dead_mask):
    out, _ = _encode_fwd(k, k_aux, compute_dtype, encoder_grad, select, x, W_enc, b_enc, dead_mask)
    return out


def _encode_fwd(k, k_aux, compute_dtype, encoder_grad, select, x, W_enc, b_enc, dead_mask):
    method = resolve(select, screen=compute_dtype == "float32")
    if method == "screened":  # no (batch, d_sae) float32 GEMM: AuxK computes its dead columns itself
        top, idx = cpu_kernels.screened_top_k(x, W_enc, b_enc, k)  # (batch, k)
        pre = lambda ids: (
            matmul(x, W_enc if ids is None else W_enc[:, ids], compute_dtype) + (b_enc if ids is None else b_enc[ids])
        )
    elif method == "native":  # the bias is added inside the kernel: one pass less over (batch, d_sae)
        pre = matmul(x, W_enc, compute_dtype)  # (batch, d_sae), without the bias
        top, idx = cpu_kernels.top_k_bias(pre, b_enc, k)  # (batch, k)
        pre = pre + b_enc if k_aux else None
    else:
        pre = matmul(x, W_enc, compute_dtype) + b_enc  # (batch, d_sae)
        top, idx = select_top_k(pre, k, method)  # (batch, k)
    vals = jax.nn.relu(top)
    if k_aux:
        aux = aux_topk(pre, dead_mask, k_aux)  # (batch, k_aux)
    else:
        aux = TopK(jnp.zeros((x.shape[0], 0), jnp.float32), jnp.zeros((x.shape[0], 0), jnp.int32))
    return (vals, idx, *aux), (x, W_enc, vals, idx, aux.vals, aux.idx, dead_mask)


def _encode_bwd(k, k_aux, compute_dtype, encoder_grad, select, res, cts):
    x, W_enc, vals, idx, aux_vals, aux_idx, dead_mask = res
    g_vals, _, g_aux, _ = cts
    g = g_vals * (vals > 0)  # (batch, k) ReLU
    if encoder_grad == "gemm":
        dpre = densify(g, idx, W_enc.shape[1])  # (batch, d_sae)
        dW_enc, db_enc = matmul(x.T, dpre, compute_dtype), dpre.sum(0)
    else:
        dW_enc = scatter_rows(g, idx, x[:, None, :], None, W_enc.shape[1]).T  # (d_in, d_sae)
        db_enc = jax.ops.segment_sum(g.ravel(), idx.ravel(), W_enc.shape[1])
    if k_aux:
        dW_aux, db_aux = aux_encoder_grad(x, g_aux, TopK(aux_vals, aux_idx), dead_mask, compute_dtype)
        dW_enc, db_enc = dW_enc + dW_aux, db_enc + db_aux
    g_all = jnp.concatenate([g, g_aux * (aux_vals > 0)], 1)  # (batch, k + k_aux)
    dx = gather_sum(g_all, jnp.concatenate([idx, aux_idx], 1), W_enc.T, compute_dtype)  # dead in training
    return dx.astype(x.dtype), dW_enc, db_enc, None


_encode.defvjp(_encode_fwd, _encode_bwd)


# --- decoder kernel -----------------------------------------------------------------------------------


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _decode(prefixes, compute_dtype, decoder_grad, vals, idx, W_dec, b_dec):
    return _decode_fwd(prefixes, compute_dtype, decoder_grad, vals, idx, W_dec, b_dec)[0]


def _decode_fwd(prefixes, compute_dtype, decoder_grad, vals, idx, W_dec, b_dec):
    sel = _prefix_onehot(idx, prefixes)  # (batch, k, n_prefixes) or None
    if sel is None:
        parts = gather_sum(vals, idx, W_dec, compute_dtype)[None]  # (1, batch, d_in)
    else:
        parts = jnp.moveaxis(gather_blocks(vals, sel, idx, W_dec, compute_dtype), 1, 0)  # (n_pre, b, d_in)
    return jnp.cumsum(parts, axis=0) + b_dec, (vals, idx, W_dec, sel)


def _decode_bwd(prefixes, compute_dtype, decoder_grad, res, g):
    vals, idx, W_dec, sel = res
    suffix = jnp.cumsum(g[::-1], axis=0)[::-1]  # (n_prefixes, batch, d_in): a block's total cotangent
    rows = jnp.moveaxis(suffix, 0, 1)  # (batch, n_prefixes, d_in)
    dvals = gather_dot(rows, sel, idx, W_dec, compute_dtype)  # (batch, k)
    if decoder_grad == "segment":
        dW_dec = scatter_rows(vals, idx, rows, sel, W_dec.shape[0])
    else:
        codes = densify(vals, idx, W_dec.shape[0])  # (batch, d_sae)
        blocks = zip((0, *prefixes[:-1]), prefixes, strict=True)
        per_block = [matmul(codes[:, a:b].T, suffix[m], compute_dtype) for m, (a, b) in enumerate(blocks)]
        dW_dec = jnp.concatenate(per_block)  # (d_sae, d_in)
    return dvals, None, dW_dec, g.sum((0, 1))


_decode.defvjp(_decode_fwd, _decode_bwd)


def _prefix_onehot(idx: jax.Array, prefixes: tuple[int, ...]) -> jax.Array | None:
    """(batch, k, n_prefixes) one-hot of the prefix block [m_{p-1}, m_p) of each slot's latent; None for a
    single prefix."""
    if len(prefixes) == 1:
        return None
    block = sum((idx >= p).astype(jnp.int32) for p in prefixes[:-1])  # (batch, k)
    return jax.nn.one_hot(block, len(prefixes), dtype=jnp.float32)
