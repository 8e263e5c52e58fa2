"""Input scaling: the trainer feeds the SAE `x * s` for a scalar s, and at export folds s back into the
parameters, so the exported SAE takes raw activations and returns raw reconstructions.

`fold_input_scaling(params, s)` gives parameters P' with `SAE_P'(x) = SAE_P(x * s) / s` (reconstruction),
for every architecture, thresholds included.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from saelab.sae.params import SAEParams

ScaleTarget = Literal["d_in", "unit"]
# The trainer's choice (train.input_scaling): mean squared norm d_in (sqrt_d), 1 (unit), or raw inputs (none).
InputScaling = Literal["sqrt_d", "unit", "none"]
FoldMode = Literal["codes", "weights"]


def input_scale(x: jax.Array, target: ScaleTarget = "d_in") -> jax.Array:
    """s with mean ||x * s||^2 = d_in ("d_in", SAELens-like: per-dimension variance ~1) or 1 ("unit",
    Gemma Scope), from a (n, d_in) sample; a float32 scalar."""
    mean_sq = jnp.mean(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=1))
    goal = x.shape[1] if target == "d_in" else 1.0
    return jnp.sqrt(goal / mean_sq)


def fold_input_scaling(
    params: SAEParams, scale: float | jax.Array, mode: FoldMode = "codes", out_scale: float | jax.Array | None = None
) -> SAEParams:
    """Parameters for raw inputs of an SAE trained on inputs multiplied by `scale`.

    mode "codes" (default): codes come out in raw-input units, divided by s: b_enc, b_dec and threshold
    are divided by s; W_enc and W_dec are untouched (a unit-norm decoder stays unit-norm).
    mode "weights" (SAELens' fold_activation_norm_scaling_factor): codes unchanged: W_enc * s, W_dec / s,
    b_dec / s; b_enc and threshold are untouched.
    Either way `decode(encode(x))` on raw x equals the scaled SAE's reconstruction of x * s, divided by s.

    A transcoder trained on inputs x * s and targets y * t (`out_scale` t, each hook scaled by its own
    statistics) folds to `T'(x) = T(x * s) / t`: the output side (W_dec, b_dec, W_skip) is also divided by t / s.
    """
    if out_scale is not None:
        return _fold_transcoder(params, jnp.asarray(scale, jnp.float32), jnp.asarray(out_scale, jnp.float32), mode)
    s = jnp.asarray(scale, jnp.float32)
    if mode == "codes":
        thr = None if params.threshold is None else params.threshold / s
        return params._replace(b_enc=params.b_enc / s, b_dec=params.b_dec / s, threshold=thr)
    if mode == "weights":
        return params._replace(W_enc=params.W_enc * s, W_dec=params.W_dec / s, b_dec=params.b_dec / s)
    raise ValueError(f"mode must be 'codes' or 'weights', got {mode!r}")


def _fold_transcoder(params: SAEParams, s: jax.Array, t: jax.Array, mode: FoldMode) -> SAEParams:
    """`fold_input_scaling` with input scale s and output scale t (apply_b_dec_to_input is off for transcoders)."""
    skip = None if params.W_skip is None else params.W_skip * (s / t)
    if mode == "codes":  # codes / s: the decoder takes them back by s / t
        thr = None if params.threshold is None else params.threshold / s
        return params._replace(
            b_enc=params.b_enc / s, W_dec=params.W_dec * (s / t), b_dec=params.b_dec / t, threshold=thr, W_skip=skip
        )
    if mode == "weights":
        return params._replace(W_enc=params.W_enc * s, W_dec=params.W_dec / t, b_dec=params.b_dec / t, W_skip=skip)
    raise ValueError(f"mode must be 'codes' or 'weights', got {mode!r}")
