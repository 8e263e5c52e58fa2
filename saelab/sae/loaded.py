"""LoadedSAE: an SAE read from disk, with the hook, model and input normalisation it belongs to.

Every format (saelab's own export, SAELens, Gemma Scope, Llama Scope, EleutherAI sparsify) loads into this
one record. Constant input scales (SAELens `expected_average_only_in`, Llama Scope's dataset norm) are folded
into the parameters at load time, so `encode(params, x, cfg)` on raw activations is exact for them; only a
per-token normalisation (`constant_norm_rescale`, `layer_norm`) stays in `norm`, and `LoadedSAE.encode` /
`LoadedSAE.decode` apply it.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from saelab.sae.config import SAEConfig
from saelab.sae.params import SAEParams

RuntimeNorm = Literal["none", "constant_norm_rescale", "layer_norm"]
LAYER_NORM_EPS = 1e-5  # SAELens's run_time_activation_ln_in default


class InputNorm(NamedTuple):
    """How an SAE's input is normalised: what the file says, what was folded, what runs per token."""

    runtime: RuntimeNorm = "none"  # per-token normalisation applied around encode/decode (not foldable)
    folded_scale: float | None = None  # constant input scale s folded into the weights (x * s at training)
    declared: str = "none"  # the format's own name for it (e.g. SAELens's normalize_activations value)

    def describe(self) -> str:
        """One line for `saelab sae info`."""
        if self.runtime == "constant_norm_rescale":
            return f"{self.declared}: each token rescaled to norm sqrt(d_in) before encoding, undone after decoding"
        if self.runtime == "layer_norm":
            return f"{self.declared}: each token standardised (mean 0, std 1) before encoding, undone after decoding"
        if self.folded_scale is not None:
            return f"{self.declared}: inputs were scaled by {self.folded_scale:.6g}; folded into the weights"
        return f"{self.declared}: none (raw activations)"


class LoadedSAE(NamedTuple):
    """Parameters, config and provenance of one SAE; hook and model live in `metadata` as SAELens writes them."""

    params: SAEParams
    cfg: SAEConfig
    metadata: dict[str, Any]  # model_name, hook_name, hook_head_index, prepend_bos, context_size, ...
    norm: InputNorm = InputNorm()
    format: str = "saelens"  # the on-disk format it came from (saelab.sae.formats.FORMATS)

    @property
    def hook_name(self) -> str | None:
        return self.metadata.get("hook_name")

    @property
    def hook_head_index(self) -> int | None:
        """The attention head the SAE reads at an `attn.hook_z` hook (its input is that head's d_head slice)."""
        return self.metadata.get("hook_head_index")

    @property
    def model_name(self) -> str | None:
        return self.metadata.get("model_name")

    @property
    def prepend_bos(self) -> bool:
        return bool(self.metadata.get("prepend_bos", True))

    def encode(self, x: jax.Array) -> jax.Array:
        """Codes (batch, d_sae) of raw activations x (batch, d_in), per-token normalisation included."""
        from saelab.sae.registry import encode

        return encode(self.params, normalise_in(self.norm, x, self.cfg.d_in)[0], self.cfg)

    def decode(self, codes: jax.Array, x: jax.Array) -> jax.Array:
        """Reconstruction (batch, d_in) in raw units; x (the encoded input) gives the per-token statistics."""
        from saelab.sae.affine import decode

        stats = normalise_in(self.norm, x, self.cfg.d_in)[1]
        return normalise_out(self.norm, decode(self.params, codes, self.cfg.compute_dtype), stats)

    def reconstruct(self, x: jax.Array) -> jax.Array:
        """decode(encode(x)) in raw units, (batch, d_in)."""
        return self.decode(self.encode(x), x)


class Stats(NamedTuple):
    """Per-token statistics of `normalise_in`, each (batch, 1), that `normalise_out` undoes."""

    shift: jax.Array  # layer_norm: the token mean
    coeff: jax.Array  # constant_norm_rescale: sqrt(d_in) / ||x||
    std: jax.Array  # layer_norm: the token std (unbiased, as torch.std)


def normalise_in(norm: InputNorm, x: jax.Array, d_in: int) -> tuple[jax.Array, Stats]:
    """(normalised x, stats) as SAELens's run_time_activation_norm_fn_in computes them (sae_lens/saes/sae.py)."""
    x = x.astype(jnp.float32)
    zero, one = jnp.zeros(x.shape[:-1] + (1,), x.dtype), jnp.ones(x.shape[:-1] + (1,), x.dtype)
    if norm.runtime == "constant_norm_rescale":  # Anthropic's February 2024 update
        coeff = jnp.sqrt(jnp.float32(d_in)) / jnp.linalg.norm(x, axis=-1, keepdims=True)
        return x * coeff, Stats(zero, coeff, one)
    if norm.runtime == "layer_norm":
        mu = x.mean(-1, keepdims=True)
        std = jnp.std(x - mu, axis=-1, keepdims=True, ddof=1)
        return (x - mu) / (std + LAYER_NORM_EPS), Stats(mu, one, std)
    return x, Stats(zero, one, one)


def normalise_out(norm: InputNorm, y: jax.Array, stats: Stats) -> jax.Array:
    """Undo `normalise_in` on a reconstruction, as SAELens's run_time_activation_norm_fn_out does (the
    layer_norm inverse multiplies by the std without the eps, as there)."""
    if norm.runtime == "constant_norm_rescale":
        return y / stats.coeff
    if norm.runtime == "layer_norm":
        return y * stats.std + stats.shift
    return y
