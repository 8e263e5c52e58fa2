"""Codes of a dictionary in dense `(n, m)` or sparse top-k form, and conversions between them.

Sparse convention (what TopK / JumpReLU SAEs emit): `values (n, k)` and `indices (n, k)`; an entry whose value
is 0 is inactive padding, so rows may hold fewer than k active atoms. Active indices in a row are distinct;
padding may repeat any index.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class SparseCodes(NamedTuple):
    """Top-k form of an (n, m) code matrix; entries with value 0 are inactive."""

    values: jax.Array  # (n, k)
    indices: jax.Array  # (n, k) int


Codes = jax.Array | SparseCodes


def n_rows(codes: Codes) -> int:
    return codes.values.shape[0] if isinstance(codes, SparseCodes) else codes.shape[0]


def rows(codes: Codes, start: int, stop: int) -> Codes:
    """Rows [start, stop) of either form."""
    if isinstance(codes, SparseCodes):
        return SparseCodes(codes.values[start:stop], codes.indices[start:stop])
    return codes[start:stop]


def to_dense(codes: Codes, m: int) -> jax.Array:
    """(n, m) dense codes; padding entries (value 0) add nothing."""
    if not isinstance(codes, SparseCodes):
        return jnp.asarray(codes)
    values, indices = jnp.asarray(codes.values), jnp.asarray(codes.indices)
    n = values.shape[0]
    return jnp.zeros((n, m), values.dtype).at[jnp.arange(n)[:, None], indices].add(values)


def check(codes: Codes, m: int, n: int | None = None) -> None:
    """Validate shapes at a public boundary."""
    if isinstance(codes, SparseCodes):
        if codes.values.shape != codes.indices.shape or codes.values.ndim != 2:
            raise ValueError(
                f"sparse codes need values and indices of one (n, k) shape, got "
                f"{codes.values.shape} and {codes.indices.shape}"
            )
    elif codes.ndim != 2 or codes.shape[1] != m:
        raise ValueError(f"dense codes must be (n, {m}), got {codes.shape}")
    if n is not None and n_rows(codes) != n:
        raise ValueError(f"codes have {n_rows(codes)} rows, activations {n}")
