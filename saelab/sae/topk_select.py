"""Top-k selection for the TopK family: `jax.lax.top_k`, saelab's multi-threaded CPU kernel ("native"), or
an exact two-stage selection over blocks; all three give `lax.top_k`'s values and indices. The sparse encoder
has a fourth, "screened" (saelab.sae.cpu_kernels.screened_top_k): a bfloat16 GEMM and an error bound rule out
most latents and only the rest are computed in float32; the same top k of the float32 pre-activations, whose
values are summed in another order than XLA's GEMM (equal up to float32 rounding, not bit for bit).

"auto" (the default) takes "screened" in the sparse encoder on CPUs that multiply bfloat16 in hardware,
"native" for other float32 selections where the CPU kernels serve the process, else `lax.top_k`.

On XLA CPU `lax.top_k` is one single-threaded runtime call whose cost grows with the row length; the
elementwise and reduction fusions around it run on every core. "blocks" moves most of the work into such
a fusion and leaves the runtime call two short rows:
1. cut each row of n values into n / w blocks of w and take each block's maximum (one parallel pass);
2. `lax.top_k` of the block maxima picks k blocks, put back into index order;
3. `lax.top_k` of those k * w candidates gives the answer.
It is exact, not an estimate: each of the k largest entries lies in one of the k blocks with the largest
maxima (a block outside them is beaten by k blocks whose maxima each beat all of its entries), and both
calls see their entries in index order, so ties go to the lower index as in `lax.top_k`. Block maxima are
taken in `lax.top_k`'s own total order of floats (its comparator: the bits as integers, negatives flipped),
so -0.0 < 0.0, NaN above +inf and -NaN below -inf agree with it too.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp

from saelab.sae import cpu_kernels
from saelab.sae.codes import top_k

__all__ = ["TopKSelect", "select_top_k", "resolve", "block_top_k", "block_width"]

TopKSelect = Literal["auto", "lax", "native", "screened", "blocks"]
_FLIP = 0x7FFFFFFF  # xor of a negative float's bits that makes their integer order the float order


def select_top_k(a: jax.Array, k: int, method: TopKSelect = "auto") -> tuple[jax.Array, jax.Array]:
    """(values, indices) of the k largest entries along the last axis, each (..., k), sorted descending,
    ties to the lower index: `jax.lax.top_k`'s result, computed by `method`. Differentiable in a."""
    method = resolve(method, a.dtype)
    if method == "lax":
        return top_k(a, k)
    if method == "blocks":
        return block_top_k(a, k)
    n = a.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"top-k needs 1 <= k <= {n} (the last axis), got k={k}")
    rows = jax.lax.stop_gradient(a).reshape(-1, n).astype(jnp.float32)  # exact: widening keeps the order
    _, idx = cpu_kernels.top_k_bias(rows, jnp.zeros((n,), jnp.float32), k)
    idx = idx.reshape(*a.shape[:-1], k)
    return jnp.take_along_axis(a, idx, axis=-1), idx


def resolve(method: TopKSelect, dtype: jnp.dtype = jnp.float32, *, screen: bool = False) -> TopKSelect:
    """The selection `method` names for values of `dtype`. "auto" is "screened" where the caller can screen
    (`screen`: the sparse encoder, whose pre-activations are a float32 GEMM) and the CPU multiplies bfloat16 in
    hardware, else "native" for float32 where the CPU kernels serve the process, else "lax". "native" or
    "screened" without the kernels is an error naming the way out; "screened" where the caller cannot screen
    is "native" (the same top k of the pre-activations it is given)."""
    if method not in ("auto", "lax", "native", "screened", "blocks"):
        raise ValueError(f"unknown top-k selection {method!r}; use 'auto', 'lax', 'native', 'screened' or 'blocks'")
    if method == "auto":
        if not (jnp.dtype(dtype) == jnp.float32 and cpu_kernels.enabled()):
            return "lax"
        return "screened" if screen and cpu_kernels.fast_bfloat16() else "native"
    if method in ("native", "screened") and not cpu_kernels.enabled():
        raise ValueError(
            f"topk_select={method!r} needs saelab's CPU kernels, which do not serve this process (a CPU backend "
            "with one device, a C++ compiler, SAELAB_CPU_KERNELS not 0); use 'auto' or 'lax'"
        )
    if method == "screened":
        return "screened" if screen else "native"
    return method


def block_width(n: int, k: int) -> int:
    """The block width w for rows of n and k kept: the power of two nearest sqrt(n / k), which balances
    the two `lax.top_k` calls (n / w and k * w entries); 1 means the blocks would not pay (plain top-k)."""
    if k < 1 or n < 4 * k:
        return 1
    return 2 ** round(math.log2(math.sqrt(n / k)))


def block_top_k(a: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """`jax.lax.top_k(a, k)` (values and indices, the same bits) through the two-stage block selection.

    a: (..., n) float32, bfloat16 or float16; other dtypes and rows too short for blocks of 2 or more
    take `lax.top_k` itself. Differentiable in a (the values are gathered from it).
    """
    n = a.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"top-k needs 1 <= k <= {n} (the last axis), got k={k}")
    w = block_width(n, k)
    if w < 2 or a.dtype not in (jnp.float32, jnp.bfloat16, jnp.float16):
        return top_k(a, k)
    rows = a.reshape(-1, n)  # (rows, n)
    vals, idx = _blocks(rows, k, w)
    return vals.reshape(*a.shape[:-1], k), idx.reshape(*a.shape[:-1], k)


def _blocks(a: jax.Array, k: int, w: int) -> tuple[jax.Array, jax.Array]:
    r, n = a.shape
    key = _order_key(jax.lax.stop_gradient(a))  # (r, n) int32
    nb = -(-n // w)
    if nb * w != n:  # pad with the lowest key at indices >= n: every real entry beats it
        key = jnp.pad(key, ((0, 0), (0, nb * w - n)), constant_values=jnp.iinfo(jnp.int32).min)
    blocks = key.reshape(r, nb, w)  # (r, nb, w)
    block_max = _key_float(blocks.max(-1))  # (r, nb) each block's largest entry, in lax.top_k's order
    _, chosen = top_k(block_max, k)  # (r, k) block indices
    chosen = jnp.sort(chosen, axis=-1)  # index order, so ties in stage 3 go to the lower index
    cand = jnp.take_along_axis(blocks, chosen[:, :, None], axis=1).reshape(r, k * w)  # (r, k * w) keys
    _, j = top_k(_key_float(cand), k)  # (r, k) positions among the candidates
    idx = jnp.take_along_axis(chosen, j // w, axis=1) * w + j % w  # (r, k) indices into the row
    return jnp.take_along_axis(a, idx, axis=1), idx.astype(jnp.int32)


def _order_key(a: jax.Array) -> jax.Array:
    """int32 keys whose integer order is `lax.top_k`'s float order (bits of the float32 value, negatives
    flipped); exact for bfloat16 and float16 too, whose widening to float32 keeps their order."""
    bits = jax.lax.bitcast_convert_type(a.astype(jnp.float32), jnp.int32)
    return jnp.where(bits < 0, bits ^ jnp.int32(_FLIP), bits)


def _key_float(key: jax.Array) -> jax.Array:
    """The float32 whose `_order_key` is `key` (the flip is its own inverse)."""
    return jax.lax.bitcast_convert_type(jnp.where(key < 0, key ^ jnp.int32(_FLIP), key), jnp.float32)
