"""Sparse TopK kernels: only k latents per token are live, so the backward passes touch only those.

`topk_encode` and `sparse_decode` are `jax.custom_vjp` functions whose gradients for W_enc, b_enc and W_dec
are sums over the (batch, k) chosen entries, like the fused encoder and embedding-bag decoder of EleutherAI
sparsify and the sparse kernels of OpenAI's "Scaling and evaluating sparse autoencoders" (appendix D).
`dense_topk_encode` / `dense_decode` are the plain-autodiff twins that the tests compare against.

Weight gradients, two ways each (`encoder_grad`, `decoder_grad`):
- "segment": scatter-add the (batch * k) rows `g_bj * x_b` (encoder) or `vals_bj * dx_hat_b` (decoder)
  into the chosen latents, scanning over chunks of DEFAULT_CHUNK tokens so that each chunk's (chunk, k, d)
  block stays in cache: O(batch * k * d);
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

from saelab.sae.affine import matmul
from saelab.sae.auxk import aux_encoder_grad, aux_topk
from saelab.sae.codes import TopK, densify, top_k
from saelab.sae.config import ComputeDtype

GradMethod = Literal["gemm", "segment"]
DEFAULT_ENCODER_GRAD: GradMethod = "segment"
DEFAULT_DECODER_GRAD: GradMethod = "segment"
DEFAULT_CHUNK = 128
"""Tokens per scan step of the sparse backward kernels (the speed is flat across 64-256)."""


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
) -> tuple[TopK, TopK]:
    """`topk_encode` plus the AuxK codes `aux_topk(pre, dead_mask, k_aux)` from the same GEMM."""
    if x.ndim != 2 or W_enc.shape[0] != x.shape[1] or b_enc.shape != (W_enc.shape[1],):
        raise ValueError(f"shapes x {x.shape}, W_enc {W_enc.shape}, b_enc {b_enc.shape} do not fit together")
    if not 1 <= k <= W_enc.shape[1] or not 0 <= k_aux <= W_enc.shape[1]:
        raise ValueError(f"need 1 <= k <= d_sae and 0 <= k_aux <= d_sae, got k={k}, k_aux={k_aux}")
    if dead_mask is None or k_aux == 0:
        dead_mask, k_aux = jnp.zeros((W_enc.shape[1],), bool), 0
    vals, idx, aux_vals, aux_idx = _encode(k, k_aux, compute_dtype, encoder_grad, x, W_enc, b_enc, dead_mask)
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


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _encode(k, k_aux, compute_dtype, encoder_grad, x, W_enc, b_enc, dead_mask):
    out, _ = _encode_fwd(k, k_aux, compute_dtype, encoder_grad, x, W_enc, b_enc, dead_mask)
    return out


def _encode_fwd(k, k_aux, compute_dtype, encoder_grad, x, W_enc, b_enc, dead_mask):
    pre = matmul(x, W_enc, compute_dtype) + b_enc  # (batch, d_sae)
    top, idx = top_k(pre, k)  # (batch, k)
    vals = jax.nn.relu(top)
    if k_aux:
        aux = aux_topk(pre, dead_mask, k_aux)  # (batch, k_aux)
    else:
        aux = TopK(jnp.zeros((x.shape[0], 0), jnp.float32), jnp.zeros((x.shape[0], 0), jnp.int32))
    return (vals, idx, *aux), (x, W_enc, vals, idx, aux.vals, aux.idx, dead_mask)


def _encode_bwd(k, k_aux, compute_dtype, encoder_grad, res, cts):
    x, W_enc, vals, idx, aux_vals, aux_idx, dead_mask = res
    g_vals, _, g_aux, _ = cts
    g = g_vals * (vals > 0)  # (batch, k) ReLU
    if encoder_grad == "gemm":
        dpre = densify(g, idx, W_enc.shape[1])  # (batch, d_sae)
        dW_enc, db_enc = matmul(x.T, dpre, compute_dtype), dpre.sum(0)
    else:
        dW_enc = _scatter_rows(g, idx, x[:, None, :], None, W_enc.shape[1]).T  # (d_in, d_sae)
        db_enc = jax.ops.segment_sum(g.ravel(), idx.ravel(), W_enc.shape[1])
    if k_aux:
        dW_aux, db_aux = aux_encoder_grad(x, g_aux, TopK(aux_vals, aux_idx), dead_mask, compute_dtype)
        dW_enc, db_enc = dW_enc + dW_aux, db_enc + db_aux
    g_all = jnp.concatenate([g, g_aux * (aux_vals > 0)], 1)  # (batch, k + k_aux)
    dx = _gather_sum(g_all, jnp.concatenate([idx, aux_idx], 1), W_enc.T, compute_dtype)  # dead in training
    return dx.astype(x.dtype), dW_enc, db_enc, None


_encode.defvjp(_encode_fwd, _encode_bwd)


# --- decoder kernel -----------------------------------------------------------------------------------


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _decode(prefixes, compute_dtype, decoder_grad, vals, idx, W_dec, b_dec):
    return _decode_fwd(prefixes, compute_dtype, decoder_grad, vals, idx, W_dec, b_dec)[0]


def _decode_fwd(prefixes, compute_dtype, decoder_grad, vals, idx, W_dec, b_dec):
    sel = _prefix_onehot(idx, prefixes)  # (batch, k, n_prefixes) or None
    if sel is None:
        parts = _gather_sum(vals, idx, W_dec, compute_dtype)[None]  # (1, batch, d_in)
    else:
        parts = jnp.moveaxis(_gather_blocks(vals, sel, idx, W_dec, compute_dtype), 1, 0)  # (n_pre, b, d_in)
    return jnp.cumsum(parts, axis=0) + b_dec, (vals, idx, W_dec, sel)


def _decode_bwd(prefixes, compute_dtype, decoder_grad, res, g):
    vals, idx, W_dec, sel = res
    suffix = jnp.cumsum(g[::-1], axis=0)[::-1]  # (n_prefixes, batch, d_in): a block's total cotangent
    rows = jnp.moveaxis(suffix, 0, 1)  # (batch, n_prefixes, d_in)
    dvals = _gather_dot(rows, sel, idx, W_dec, compute_dtype)  # (batch, k)
    if decoder_grad == "segment":
        dW_dec = _scatter_rows(vals, idx, rows, sel, W_dec.shape[0])
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


# --- gather / scatter primitives --------------------------------------------------------------------
# A slot (b, j) pairs latent idx[b, j] with a row of its token: `rows[b, 0]`, or with prefix blocks
# `sum_m sel[b, j, m] * rows[b, m]`. Chunks of DEFAULT_CHUNK tokens keep each (chunk, k, d) block of
# gathered rows in cache, where one (batch, k, d) block at training sizes would spill.


def _gather_sum(w: jax.Array, idx: jax.Array, table: jax.Array, compute_dtype: ComputeDtype) -> jax.Array:
    """`sum_j w[b, j] * table[idx[b, j]]`, (batch, d), as a k-step gather-accumulate loop, 8 steps fused
    per iteration: never materialises the (batch, k, d) gathered rows. (Unrolled in Python, XLA's fusion of
    the k gathers depended on the consumers, and a squared-error sum after it made it several times slower.)"""
    dt = jnp.dtype(compute_dtype)
    table = table.astype(dt)
    step = lambda j, acc: acc + w[:, j, None] * table[idx[:, j]].astype(jnp.float32)
    acc = jnp.zeros((w.shape[0], table.shape[1]), jnp.float32)
    return jax.lax.fori_loop(0, w.shape[1], step, acc, unroll=min(8, max(w.shape[1], 1)))


def _gather_blocks(
    w: jax.Array, sel: jax.Array, idx: jax.Array, table: jax.Array, compute_dtype: ComputeDtype
) -> jax.Array:
    """`out[b, m] = sum_j w[b, j] * sel[b, j, m] * table[idx[b, j]]`, (batch, n_prefixes, d)."""
    dt = jnp.dtype(compute_dtype)
    table = table.astype(dt)

    def one(chunk):
        wc, sc, i = chunk  # (c, k), (c, k, m), (c, k)
        ws = (wc[:, :, None] * sc).astype(dt)  # (c, k, m)
        return jnp.einsum("ckm,ckd->cmd", ws, table[i], preferred_element_type=jnp.float32)

    return _map_chunks(one, w, sel, idx)


def _gather_dot(
    rows: jax.Array, sel: jax.Array | None, idx: jax.Array, table: jax.Array, compute_dtype: ComputeDtype
) -> jax.Array:
    """`<row_bj, table[idx[b, j]]>` for every slot, (batch, k)."""
    dt = jnp.dtype(compute_dtype)
    table = table.astype(dt)

    def one(chunk):
        r, i, sc = chunk  # (c, m, d), (c, k), (c, k, m) or None
        dots = jnp.einsum("cmd,ckd->ckm", r.astype(dt), table[i], preferred_element_type=jnp.float32)
        return dots[..., 0] if sc is None else jnp.sum(dots * sc, axis=-1)

    return _map_chunks(one, rows, idx, sel)


def _scatter_rows(w: jax.Array, idx: jax.Array, rows: jax.Array, sel: jax.Array | None, n_out: int) -> jax.Array:
    """`out[idx[b, j]] += w[b, j] * row_bj` in float32, (n_out, d), scanning over chunks of tokens."""

    def step(out, chunk):
        r, i, sc, wc = chunk  # (c, d) without prefixes, else (c, m, d); (c, k); (c, k, m) or None; (c, k)
        r = r.astype(jnp.float32)
        if sc is None:
            upd = wc[:, :, None] * r[:, None, :]  # (c, k, d)
        else:
            upd = jnp.einsum("ckm,cmd->ckd", wc[:, :, None] * sc, r)
        return out.at[i.ravel()].add(upd.reshape(-1, upd.shape[-1]), mode="promise_in_bounds"), None

    if sel is None:  # a (batch, 1, d) operand gets a layout XLA CPU fills and relayouts slowly
        rows = rows[:, 0]
    out = jnp.zeros((n_out, rows.shape[-1]), jnp.float32)
    out, _ = jax.lax.scan(step, out, _chunks(rows, idx, sel, w))
    return out


def _map_chunks(fn, *arrays: jax.Array | None) -> jax.Array:
    """lax.map of fn over token chunks of the arrays (None passes through); the result's token axis is
    trimmed back to the batch."""
    n = arrays[0].shape[0]
    out = jax.lax.map(fn, _chunks(*arrays))  # (n_chunks, c, ...)
    return out.reshape(-1, *out.shape[2:])[:n]


def _chunks(*arrays: jax.Array | None) -> tuple[jax.Array | None, ...]:
    """Zero-pad the token axis to a multiple of the chunk size and split it: (n_chunks, c, ...)."""
    n = next(a for a in arrays if a is not None).shape[0]
    c = min(DEFAULT_CHUNK, n)
    pad = -n % c

    def split(a):
        if a is None:
            return None
        if pad:
            a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(-1, c, *a.shape[1:])

    return tuple(split(a) for a in arrays)
