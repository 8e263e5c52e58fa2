"""Gather / scatter primitives of the sparse TopK kernels (saelab.sae.sparse) over (batch, k) slots.

A slot (b, j) pairs latent idx[b, j] with a row of its token: `rows[b, 0]`, or with prefix blocks
`sum_m sel[b, j, m] * rows[b, m]`. Chunks of DEFAULT_CHUNK tokens keep each (chunk, k, d) block of gathered
rows in cache, where one (batch, k, d) block at training sizes would spill. Without prefix blocks, where
saelab's CPU kernels serve the process (saelab.sae.cpu_kernels), each runs as one multi-threaded call instead,
with the same sums in the same order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from saelab.sae import cpu_kernels
from saelab.sae.config import ComputeDtype

__all__ = ["DEFAULT_CHUNK", "gather_sum", "gather_blocks", "gather_dot", "scatter_rows"]

DEFAULT_CHUNK = 128
"""Tokens per scan step of the sparse backward kernels (the speed is flat across 64-256)."""


def gather_sum(w: jax.Array, idx: jax.Array, table: jax.Array, compute_dtype: ComputeDtype) -> jax.Array:
    """`sum_j w[b, j] * table[idx[b, j]]`, (batch, d), as a k-step gather-accumulate loop, 8 steps fused
    per iteration: never materialises the (batch, k, d) gathered rows. (Unrolled in Python, XLA's fusion of
    the k gathers depended on the consumers, and a squared-error sum after it made it several times slower.)"""
    dt = jnp.dtype(compute_dtype)
    table = table.astype(dt)
    if cpu_kernels.enabled():
        return cpu_kernels.gather_sum(w, idx, table)
    step = lambda j, acc: acc + w[:, j, None] * table[idx[:, j]].astype(jnp.float32)
    acc = jnp.zeros((w.shape[0], table.shape[1]), jnp.float32)
    return jax.lax.fori_loop(0, w.shape[1], step, acc, unroll=min(8, max(w.shape[1], 1)))


def gather_blocks(
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


def gather_dot(
    rows: jax.Array, sel: jax.Array | None, idx: jax.Array, table: jax.Array, compute_dtype: ComputeDtype
) -> jax.Array:
    """`<row_bj, table[idx[b, j]]>` for every slot, (batch, k)."""
    dt = jnp.dtype(compute_dtype)
    table = table.astype(dt)
    if sel is None and cpu_kernels.enabled():
        return cpu_kernels.gather_dot(rows[:, 0].astype(dt), idx, table)

    def one(chunk):
        r, i, sc = chunk  # (c, m, d), (c, k), (c, k, m) or None
        dots = jnp.einsum("cmd,ckd->ckm", r.astype(dt), table[i], preferred_element_type=jnp.float32)
        return dots[..., 0] if sc is None else jnp.sum(dots * sc, axis=-1)

    return _map_chunks(one, rows, idx, sel)


def scatter_rows(w: jax.Array, idx: jax.Array, rows: jax.Array, sel: jax.Array | None, n_out: int) -> jax.Array:
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
        if cpu_kernels.enabled():
            return cpu_kernels.scatter_rows(w, idx, rows, n_out)
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
