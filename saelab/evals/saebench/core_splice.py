"""SAEBench core's model-behaviour metrics (sae-bench 0.6 `evals/core/main.py`, `get_recons_loss` and
`get_downstream_reconstruction_metrics`): CE loss and KL divergence with the SAE spliced in and with the hook
zero-ablated.

SAEBench's definitions, as its recommended run sets them (`ignore_tokens` = BOS, EOS and padding,
`exclude_special_tokens_from_reconstruction`): the SAE replaces the hook at ordinary tokens only (special ones
keep their clean activation); zero ablation zeroes the hook at every position, BOS included; the CE of position p
(predicting p + 1) and the KL at position p count when token p is not special. Scores:
`ce_loss_score = (CE_abl - CE_sae) / (CE_abl - CE_clean)`, `kl_div_score = (KL_abl - KL_sae) / KL_abl`, each CE and
KL the mean over every counted position of every batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models import HookContext, forward
from saelab.models.config import ModelConfig
from saelab.models.hook_views import sae_input, with_sae_output


class SpliceSums(NamedTuple):
    """Per-batch sums over the counted positions."""

    n_ce: jax.Array  # counted CE positions
    n_kl: jax.Array  # counted KL positions
    ce_clean: jax.Array
    ce_sae: jax.Array
    ce_abl: jax.Array
    kl_sae: jax.Array
    kl_abl: jax.Array


def ce_kl_sums(tokens: jax.Array, keep: jax.Array, clean: jax.Array, sae: jax.Array, abl: jax.Array) -> SpliceSums:
    """tokens, keep (batch, seq) (keep: the token is not special); logits (batch, seq, vocab) of the clean, spliced
    and ablated runs -> the sums SAEBench averages."""

    def ce(logits):  # (b, t - 1) next-token loss, TransformerLens's loss_per_token
        lp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32))
        return -jnp.take_along_axis(lp, tokens[:, 1:, None], axis=-1)[..., 0]

    def kl(logits):  # (b, t) KL(clean || variant), per position
        p = jax.nn.log_softmax(clean.astype(jnp.float32))
        q = jax.nn.log_softmax(logits.astype(jnp.float32))
        return jnp.sum(jnp.exp(p) * (p - q), axis=-1)

    k_ce = keep[:, :-1].astype(jnp.float32)
    k_kl = keep.astype(jnp.float32)
    return SpliceSums(
        n_ce=k_ce.sum(),
        n_kl=k_kl.sum(),
        ce_clean=(ce(clean) * k_ce).sum(),
        ce_sae=(ce(sae) * k_ce).sum(),
        ce_abl=(ce(abl) * k_ce).sum(),
        kl_sae=(kl(sae) * k_kl).sum(),
        kl_abl=(kl(abl) * k_kl).sum(),
    )


def make_splice_fn(cfg: ModelConfig, hook: str, encode: Callable, decode: Callable, head: int | None = None):
    """Jitted (model_params, sae_params, tokens (b, t), special_ids (s,)) -> SpliceSums for one batch: three
    forwards (clean, SAE at ordinary tokens, zero ablation) with SAEBench's masks."""

    def run(model_params, sae_params, tokens, special_ids):
        keep = ~jnp.isin(tokens, special_ids)  # (b, t)

        def splice(x):  # the hook's value -> the SAE's reconstruction at ordinary tokens
            view = sae_input(x, head)  # (b, t, d_in)
            rec = decode(sae_params, encode(sae_params, view.reshape(-1, view.shape[-1])))
            rec = jnp.where(keep[..., None], rec.reshape(view.shape).astype(view.dtype), view)
            return with_sae_output(x, rec, head)

        def ablate(x):
            return with_sae_output(x, jnp.zeros_like(sae_input(x, head)), head)

        def logits(hooks):
            return forward(model_params, cfg, tokens, None, HookContext(hooks=hooks)).logits

        return ce_kl_sums(tokens, keep, logits({}), logits({hook: splice}), logits({hook: ablate}))

    return jax.jit(run)


def add(a: SpliceSums | None, b: SpliceSums) -> SpliceSums:
    """Running sums in float64 on the host."""
    b = SpliceSums(*(np.asarray(v, np.float64) for v in b))
    return b if a is None else SpliceSums(*(x + y for x, y in zip(a, b, strict=True)))


def finish(s: SpliceSums) -> dict[str, float]:
    """SAEBench's model_behavior_preservation and model_performance_preservation numbers."""
    ce = {k: float(getattr(s, f"ce_{k}")) / float(s.n_ce) for k in ("clean", "sae", "abl")}
    kl = {k: float(getattr(s, f"kl_{k}")) / float(s.n_kl) for k in ("sae", "abl")}
    return {
        "kl_div_score": (kl["abl"] - kl["sae"]) / kl["abl"],
        "kl_div_with_ablation": kl["abl"],
        "kl_div_with_sae": kl["sae"],
        "ce_loss_score": (ce["abl"] - ce["sae"]) / (ce["abl"] - ce["clean"]),
        "ce_loss_with_ablation": ce["abl"],
        "ce_loss_with_sae": ce["sae"],
        "ce_loss_without_sae": ce["clean"],
    }
