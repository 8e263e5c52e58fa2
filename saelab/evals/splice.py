"""CE loss recovered and KL divergence: the SAE reconstruction spliced into the model at the SAE's own hook.

Four forwards per batch inside one jit: clean (which also caches the hook's activations for the
reconstruction metrics), SAE-spliced, zero-ablated and mean-ablated. Position 0 of
every window is the BOS token; the SAE never trained on it (its norm is huge), so every variant keeps the
clean BOS activation and replaces positions 1.. only. CE is the mean next-token loss over positions 0..T-2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from saelab.evals.metrics import batch_sums
from saelab.models import HookContext, forward
from saelab.models.config import ModelConfig

Encode = Callable[[Any, jax.Array], jax.Array]  # (sae_params, x (n, d)) -> codes (n, d_sae)
Decode = Callable[[Any, jax.Array], jax.Array]  # (sae_params, codes) -> x_hat (n, d)


class SpliceSums(NamedTuple):
    n: jax.Array  # predicted positions
    ce_clean: jax.Array
    ce_sae: jax.Array
    ce_zero: jax.Array
    ce_mean: jax.Array
    kl_sae: jax.Array
    kl_zero: jax.Array
    kl_mean: jax.Array


def make_splice_fn(cfg: ModelConfig, hook: str, encode: Encode, decode: Decode):
    """Jitted (model_params, sae_params, tokens (b, t), act_mean (d,)) -> (SpliceSums, Sums) for one batch:
    the splice sums and the reconstruction sums of the hook's activations at positions 1.. ."""

    def reconstruct(sae_params, x):
        return decode(sae_params, encode(sae_params, x))

    def replace_after_bos(new: Callable[[jax.Array], jax.Array]):
        def hook_fn(x):  # (batch, seq, d)
            b, t, d = x.shape
            y = new(x[:, 1:].reshape(-1, d)).reshape(b, t - 1, d)
            return x.at[:, 1:].set(y.astype(x.dtype))

        return hook_fn

    def run(model_params, sae_params, tokens, act_mean):
        def logits(hooks, cache=()):
            out = forward(model_params, cfg, tokens, None, HookContext(hooks=hooks, cache=cache))
            return out.logits[:, :-1], out.cache

        clean_logits, cache = logits({}, (hook,))
        clean = jax.nn.log_softmax(clean_logits)
        x = cache[hook][:, 1:].reshape(-1, cache[hook].shape[-1]).astype(jnp.float32)
        codes = encode(sae_params, x)
        recon = batch_sums(x, decode(sae_params, codes), codes)
        variants = {
            "sae": replace_after_bos(lambda x: reconstruct(sae_params, x)),
            "zero": replace_after_bos(jnp.zeros_like),
            "mean": replace_after_bos(lambda x: jnp.broadcast_to(act_mean.astype(x.dtype), x.shape)),
        }
        target = tokens[:, 1:, None]
        ce = lambda lp: -jnp.take_along_axis(lp, target, axis=-1).sum()
        p_clean = jnp.exp(clean)
        out = {"ce_clean": ce(clean)}
        for name, fn in variants.items():
            lp = jax.nn.log_softmax(logits({hook: fn})[0])
            out[f"ce_{name}"] = ce(lp)
            out[f"kl_{name}"] = jnp.sum(p_clean * (clean - lp))
        return SpliceSums(n=jnp.asarray(target.size, jnp.float32), **out), recon

    return jax.jit(run)


def finish(s: SpliceSums) -> dict[str, float]:
    """Mean CE per variant, CE loss recovered against zero and mean ablation, mean KL to the clean model."""
    n = float(s.n)
    ce = {k: float(getattr(s, f"ce_{k}")) / n for k in ("clean", "sae", "zero", "mean")}
    rec = lambda base: (ce[base] - ce["sae"]) / (ce[base] - ce["clean"])
    return {
        "ce_loss_clean": ce["clean"],
        "ce_loss_sae": ce["sae"],
        "ce_loss_zero_ablation": ce["zero"],
        "ce_loss_mean_ablation": ce["mean"],
        "ce_loss_recovered": rec("zero"),  # (CE_zero - CE_sae) / (CE_zero - CE_clean)
        "ce_loss_recovered_mean_ablation": rec("mean"),
        "kl_div": float(s.kl_sae) / n,  # mean KL(clean || spliced) per predicted position
        "kl_div_zero_ablation": float(s.kl_zero) / n,
        "kl_div_mean_ablation": float(s.kl_mean) / n,
    }
