"""Transcoders and skip-transcoders: SAEs whose decoder writes another hook's activations than they read.

A transcoder (Dunefsky et al. 2024, "Transcoders find interpretable LLM feature circuits") encodes the MLP's
input and reconstructs the MLP's output, so its latents stand in for the MLP's neurons. A skip-transcoder
(Paulo et al. 2025, "Transcoders beat sparse autoencoders for interpretability"; sparsify's `skip_connection`)
adds a linear term, `y_hat = decode(encode(x)) + x @ W_skip`, which carries the MLP's linear part so the
latents need not.

Every architecture's loss takes the target as an optional argument and calls `target_of` and `with_skip`
here, so a TopK transcoder trains on the TopK loss (AuxK included) against the target: one loss per
architecture, not one per architecture and role. The SAE's `cfg.d_out` sets the target's width;
`saelab.sae.registry.forward` is a transcoder's inference output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from saelab.sae.affine import matmul
from saelab.sae.config import SAEConfig
from saelab.sae.params import SAEParams

__all__ = ["target_of", "with_skip", "init_skip"]


def target_of(x: jax.Array, target: jax.Array | None, params: SAEParams) -> jax.Array:
    """What the loss reconstructs, float32 (batch, d_out): `target` for a transcoder, `x` for an SAE."""
    y = x if target is None else target
    if y.ndim != 2 or y.shape != (x.shape[0], params.d_out):
        what = "x" if target is None else "target"
        raise ValueError(
            f"{what} must have shape (batch={x.shape[0]}, d_out={params.d_out}) to be reconstructed, got {y.shape}"
            + ("; a transcoder (d_out set) needs the target hook's activations" if target is None else "")
        )
    return y.astype(jnp.float32)


def with_skip(params: SAEParams, x: jax.Array, y_hat: jax.Array, cfg: SAEConfig) -> jax.Array:
    """`y_hat + x @ W_skip` for a skip-transcoder (the raw input, not centred), `y_hat` otherwise."""
    if not cfg.has_skip:
        return y_hat
    return y_hat + matmul(x.astype(jnp.float32), params.W_skip, cfg.compute_dtype)  # (batch, d_out)


def init_skip(cfg: SAEConfig) -> jax.Array | None:
    """W_skip at init: zeros (d_in, d_out) as in SAELens and sparsify, so training starts as a plain transcoder."""
    return jnp.zeros((cfg.d_in, cfg.resolved_d_out), jnp.float32) if cfg.has_skip else None
