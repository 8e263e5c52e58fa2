"""The affine maps every architecture shares: encoder pre-activations and the dense decoder.

Matmuls run in the compute dtype with float32 accumulation and float32 results; everything elementwise
(thresholds, ReLU, losses) stays float32, so bf16 compute never touches a threshold or a parameter.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from saelab.sae.config import ComputeDtype, SAEConfig
from saelab.sae.params import SAEParams


def pre_activations(params: SAEParams, x: jax.Array, cfg: SAEConfig) -> jax.Array:
    """`(x - b_dec) @ W_enc + b_enc` (b_dec only if cfg.apply_b_dec_to_input) as float32, (batch, d_sae)."""
    xc, bias = encoder_inputs(params, x, cfg)
    return matmul(xc, params.W_enc, cfg.compute_dtype) + bias


def encoder_inputs(params: SAEParams, x: jax.Array, cfg: SAEConfig) -> tuple[jax.Array, jax.Array]:
    """(centred input (batch, d_in), effective bias (d_sae,)) with `pre = xc @ W_enc + bias`.

    The centring uses a stopped b_dec and the bias carries `-(b_dec - stop(b_dec)) @ W_enc`, which is zero
    in value but gives b_dec its exact encoder gradient `-W_enc @ sum_b dpre_b` as a matvec; plain autodiff
    of `(x - b_dec) @ W_enc` would spend a second (batch x d_sae x d_in) GEMM on the gradient of x. The
    subtraction itself stays in float32, before any bf16 cast, so a large mean does not cancel in bf16.
    """
    x = _check_x(x, params.d_in).astype(jnp.float32)
    if not cfg.apply_b_dec_to_input:
        return x, params.b_enc
    b_stop = jax.lax.stop_gradient(params.b_dec)  # (d_in,)
    delta = params.b_dec - b_stop  # (d_in,) zero in value
    return x - b_stop, params.b_enc - delta @ params.W_enc


def decode(params: SAEParams, codes: jax.Array, compute_dtype: ComputeDtype = "float32") -> jax.Array:
    """Dense decoder `codes @ W_dec + b_dec`: (batch, d_sae) -> (batch, d_in) float32."""
    if codes.ndim != 2 or codes.shape[1] != params.d_sae:
        raise ValueError(f"codes must have shape (batch, {params.d_sae}), got {codes.shape}")
    return matmul(codes, params.W_dec, compute_dtype) + params.b_dec


def matmul(a: jax.Array, b: jax.Array, compute_dtype: ComputeDtype) -> jax.Array:
    """`a @ b` with operands cast to the compute dtype and a float32 result."""
    dt = jnp.dtype(compute_dtype)
    return jnp.matmul(a.astype(dt), b.astype(dt), preferred_element_type=jnp.float32)


def _check_x(x: jax.Array, d_in: int) -> jax.Array:
    if x.ndim != 2 or x.shape[1] != d_in:
        raise ValueError(f"x must have shape (batch, d_in={d_in}), got {x.shape}")
    return x
