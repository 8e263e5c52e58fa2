"""The decoder bias a run starts from: zeros, the mean, or the geometric median of a seeded sample of the
source's rows, in the scaled space the SAE trains in. A CLT's sample is (rows, L, d_out), its scale one per
layer, and its b_dec (L, d_out): each layer's mean or geometric median."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from saelab.sae import geometric_median
from saelab.train.config import TrainConfig
from saelab.train.step import Scale, scale_factor

B_DEC_SAMPLE = 16384
"""Rows of the sample the initial b_dec is computed from."""


def initial_b_dec(sample: Callable[[], np.ndarray | None], cfg: TrainConfig, scale: Scale) -> jax.Array | None:
    """The initial decoder bias from the source's sample (None on resume: the checkpoint holds b_dec):
    (d_out,), or a CLT's (L, d_out) from a (rows, L, d_out) sample."""
    x = None if cfg.train.b_dec_init == "zeros" else sample()
    if x is None:
        return None
    rng = np.random.default_rng(cfg.train.seed)
    if len(x) > B_DEC_SAMPLE:
        x = x[np.sort(rng.choice(len(x), size=B_DEC_SAMPLE, replace=False))]
    x = jnp.asarray(x) * scale_factor(scale)
    if cfg.train.b_dec_init == "mean":
        return x.mean(0)
    return geometric_median(x) if x.ndim == 2 else jax.vmap(geometric_median, in_axes=1)(x)  # per layer
