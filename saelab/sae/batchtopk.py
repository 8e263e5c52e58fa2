"""BatchTopK SAE (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders"): keep the k * batch largest
(ReLU'd) pre-activations across the whole batch, so a token gets a variable number of latents, k on average.

At inference a single threshold replaces the batch rule: `threshold` holds an exponential moving average of
the smallest kept activation, the same value for every latent, so an exported BatchTopK SAE is a JumpReLU
SAE (SAELens saves it that way). `loss` returns the batch estimate in `LossOutput.batch_threshold` and the
trainer folds it in with `update_threshold` after each step.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from pydantic import model_validator

from saelab.sae.affine import decode, pre_activations
from saelab.sae.auxk import aux_topk, auxk_loss
from saelab.sae.config import AuxKConfig, SAEConfig
from saelab.sae.losses import AuxState, LossOutput, dense_l0_and_counts, loss_output, reconstruction, zero
from saelab.sae.params import SAEParams
from saelab.sae.topk_select import TopKSelect, select_top_k
from saelab.sae.transcoder import with_skip

__all__ = [
    "BatchTopKConfig",
    "encode",
    "encode_train",
    "decode",
    "loss",
    "update_threshold",
    "ema_threshold",
    "check_ema_rate",
    "batch_topk",
    "BatchCodes",
]


class BatchTopKConfig(AuxKConfig):
    """A BatchTopK SAE (or transcoder): k * batch latents kept across the batch, trained on mse + AuxK."""

    architecture: Literal["batchtopk"] = "batchtopk"
    threshold_ema_rate: float = 0.01
    """Rate of the exponential moving average of the smallest kept activation that becomes the shared
    inference threshold (SAELens' topk_threshold_lr)."""

    @model_validator(mode="after")
    def _check_rate(self) -> BatchTopKConfig:
        check_ema_rate(self.threshold_ema_rate)
        return self

    def initial_threshold(self) -> float:
        """0: the EMA starts there, as in SAELens."""
        return 0.0


def check_ema_rate(rate: float) -> None:
    """ValueError unless the threshold EMA rate is in (0, 1]."""
    if not 0 < rate <= 1:
        raise ValueError(f"threshold_ema_rate must be in (0, 1], got {rate}")


class BatchCodes(NamedTuple):
    codes: jax.Array  # (batch, d_sae) float32
    pre: jax.Array  # (batch, d_sae) pre-activations (for AuxK)
    batch_threshold: jax.Array  # () smallest positive kept activation; nan if nothing was kept


def encode(params: SAEParams, x: jax.Array, cfg: SAEConfig) -> jax.Array:
    """Inference codes `z * 1[z > threshold]`, (batch, d_sae): per token, independent of the batch."""
    pre = pre_activations(params, x, cfg)  # (batch, d_sae)
    return jnp.where(pre > jnp.maximum(params.threshold, 0.0), pre, 0.0)


def encode_train(params: SAEParams, x: jax.Array, cfg: AuxKConfig) -> BatchCodes:
    """Training codes: the k * batch largest activations of the batch."""
    pre = pre_activations(params, x, cfg)  # (batch, d_sae)
    codes = batch_topk(pre, cfg.k, cfg.topk_select)
    kept_min = jnp.min(jnp.where(codes > 0, codes, jnp.inf))
    return BatchCodes(codes, pre, jax.lax.stop_gradient(jnp.where(jnp.isinf(kept_min), jnp.nan, kept_min)))


def loss(
    params: SAEParams, x: jax.Array, cfg: BatchTopKConfig, aux: AuxState, y: jax.Array
) -> tuple[jax.Array, LossOutput]:
    """mse against y (x, or a transcoder's target) + aux_coefficient * AuxK, with the BatchTopK training codes."""
    enc = encode_train(params, x, cfg)
    y_hat = with_skip(params, x, decode(params, enc.codes, cfg.compute_dtype), cfg)  # (batch, d_out)
    rec = reconstruction(y, y_hat)
    if cfg.aux_coefficient > 0:
        aux_codes = aux_topk(enc.pre, aux.dead_mask, cfg.resolved_k_aux)
        aux_loss = auxk_loss(params, aux_codes, y - y_hat, aux.dead_mask, cfg)
    else:
        aux_loss = zero()
    total = rec.mse + cfg.aux_coefficient * aux_loss
    l0, counts = dense_l0_and_counts(enc.codes)
    return loss_output(total, rec, l0, counts, aux_loss=aux_loss, batch_threshold=enc.batch_threshold)


def update_threshold(params: SAEParams, out: LossOutput, cfg: BatchTopKConfig) -> SAEParams:
    """The threshold EMA at cfg.threshold_ema_rate, after each optimiser step."""
    return ema_threshold(params, out, cfg.threshold_ema_rate)


def ema_threshold(params: SAEParams, out: LossOutput, rate: float) -> SAEParams:
    """`threshold <- (1 - rate) * threshold + rate * batch_threshold` (SAELens' topk_threshold EMA, from 0).

    A batch that kept nothing leaves the threshold unchanged. The threshold is never trained by the
    optimiser: its gradient is zero (mask it out of weight decay).
    """
    est = out.batch_threshold
    new = jnp.where(jnp.isnan(est), params.threshold, (1 - rate) * params.threshold + rate * est)
    return params._replace(threshold=new.astype(jnp.float32))


def batch_topk(pre: jax.Array, k: int, select: TopKSelect = "lax") -> jax.Array:
    """ReLU(pre) where it is among the k * batch largest of the batch, else 0; (batch, d_sae).

    Ties at the cut-off are all kept (a measure-zero event for real activations). The cut-off is found
    exactly without sorting the batch (a flat top_k over batch x d_sae values is a sort of them all): take
    each token's top min(2k, d_sae) candidates and find the (k * batch)-th largest among them by bisection;
    that is the batch's cut-off whenever no token has a non-candidate above it, which is checked, with a
    bisection over the whole batch as the fallback. `select` picks how the per-token candidates are found
    (saelab.sae.topk_select; the same candidates either way).
    """
    acts = jax.nn.relu(pre)
    cut = jax.lax.stop_gradient(_kth_largest(jax.lax.stop_gradient(acts), k * acts.shape[0], select))
    return jnp.where(acts >= cut, acts, 0.0)


def _kth_largest(acts: jax.Array, n: int, select: TopKSelect) -> jax.Array:
    """The n-th largest entry of a non-negative (batch, d_sae) array."""
    m = min(acts.shape[1], 2 * -(-n // acts.shape[0]))
    cand, _ = select_top_k(acts, m, select)  # (batch, m)
    cut = _bisect_kth(cand, n)
    exact = jnp.all(cand[:, -1] <= cut) | (m == acts.shape[1])
    return jax.lax.cond(exact, lambda: cut, lambda: _bisect_kth(acts, n))


def _bisect_kth(a: jax.Array, n: int) -> jax.Array:
    """Largest value v of a (non-negative float32) with #{a >= v} >= n, by bisection on the float bits,
    which order non-negative float32 like their values; 31 passes of a compare-and-count."""
    bits = jax.lax.bitcast_convert_type(a.astype(jnp.float32), jnp.int32)

    def step(_, lohi):
        lo, hi = lohi
        mid = lo + (hi - lo + 1) // 2
        ok = jnp.sum(bits >= mid) >= n
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

    lo, _ = jax.lax.fori_loop(0, 32, step, (jnp.int32(0), jnp.int32(0x7F800000)))
    return jax.lax.bitcast_convert_type(lo, jnp.float32)
