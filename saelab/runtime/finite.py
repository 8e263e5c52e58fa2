"""Non-finite values (NaN, Inf): the one error every stage raises for them, and where the first one is.

A bfloat16 overflow in a harvest, a learning rate that blows up, or a flipped bit can put a NaN or an Inf
where a number must be; downstream everything then turns NaN without failing. Each stage checks at its
boundary and raises `NonFiniteError`, naming what holds the value, where, and how to fix it.
"""

from __future__ import annotations

import numpy as np


class NonFiniteError(ValueError):
    """A NaN or Inf where a finite number is required (activations, weights, a loss or its gradients)."""


def first_nonfinite(a: np.ndarray) -> tuple[tuple[int, ...], str] | None:
    """(index, "nan" | "inf" | "-inf") of the first non-finite entry of `a` in C order; None if all are finite."""
    a = np.asarray(a)
    bad = ~np.isfinite(a)
    if not bad.any():
        return None
    where = np.unravel_index(int(np.argmax(bad.reshape(-1))), a.shape)
    v = float(a[where])
    return tuple(int(i) for i in where), "nan" if np.isnan(v) else "inf" if v > 0 else "-inf"


def count_nonfinite(a: np.ndarray) -> int:
    """How many entries of `a` are NaN or +-Inf."""
    return int(np.size(a) - np.count_nonzero(np.isfinite(a)))
