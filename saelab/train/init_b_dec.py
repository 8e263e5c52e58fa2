"""The decoder bias a run starts from: zeros, the mean, or the geometric median of a seeded sample of the
source's rows, in the scaled space the SAE trains in."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from saelab.sae import geometric_median
from saelab.train.config import TrainConfig

B_DEC_SAMPLE = 16384
"""Rows of the sample the initial b_dec is computed from."""


def initial_b_dec(sample: Callable[[], np.ndarray | None], cfg: TrainConfig, scale: float) -> jax.Array | None:
    """The initial decoder bias from the source's sample (None on resume: the checkpoint holds b_dec)."""
    x = None if cfg.train.b_dec_init == "zeros" else sample()
    if x is None:
        return None
    rng = np.random.default_rng(cfg.train.seed)
    if len(x) > B_DEC_SAMPLE:
        x = x[np.sort(rng.choice(len(x), size=B_DEC_SAMPLE, replace=False))]
    x = jnp.asarray(x) * scale
    return geometric_median(x) if cfg.train.b_dec_init == "geometric_median" else x.mean(0)
