"""CE loss recovered and KL divergence: the SAE reconstruction spliced into the model at the SAE's own hook.

Four variants per batch inside one jit: clean (which also gives the hook's activations for the
reconstruction metrics), SAE-spliced, zero-ablated and mean-ablated. Position 0 of every window is the BOS
token; the SAE never trained on it (its norm is huge), so every variant keeps the clean BOS activation and
replaces positions 1.. only. CE is the mean next-token loss over positions 0..T-2.

At a residual-stream hook (`hook_resid_pre` / `hook_resid_post`) the blocks below the hook run once for all
variants and only the blocks above it per variant. There the zero- and mean-ablated streams do not depend on
the text: position 0 holds the clean activation of the first token (the same for every window that starts
with the same token, as every eval window starts with BOS) and positions 1.. the same constant. So when all
rows of a batch share their first token, the two ablations run the blocks above the hook on one row and their
log-probs are broadcast over the batch: two variants' compute per batch instead of four, the same numbers
(`experiments/bench/eval_splice.py`). At any other hook the residual stream still carries the text, so
each variant is a full hooked forward.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.evals.metrics import batch_sums
from saelab.models import HookContext, forward
from saelab.models.config import ModelConfig
from saelab.models.hook_views import check_head_index, sae_input, with_sae_output
from saelab.models.hooks import hook_layer
from saelab.models.transformer import embed, run_blocks, unembed

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


def residual_split(hook: str) -> int | None:
    """The first block above a residual-stream hook (the variants share everything below it); None elsewhere."""
    layer = hook_layer(hook)
    if hook.endswith(".hook_resid_post"):
        return layer + 1
    if hook.endswith(".hook_resid_pre"):
        return layer
    return None


def make_splice_fn(
    cfg: ModelConfig,
    hook: str,
    encode: Encode,
    decode: Decode,
    shared_prefix: bool = True,
    head_index: int | None = None,
    shared_ablations: bool = True,
) -> Callable[..., tuple[SpliceSums, Any]]:
    """(model_params, sae_params, tokens (b, t), act_mean (d_in,)) -> (SpliceSums, Sums) for one batch, jitted:
    the splice sums and the reconstruction sums of the hook's activations at positions 1.. .

    The SAE reads and writes the hook as `saelab.models.hook_views` defines (heads concatenated at
    attn.hook_z, or the one head `head_index`), and every variant replaces only that view.
    `shared_prefix=False` forces four full hooked forwards (the reference the shared-prefix path is tested
    against); `shared_ablations=False` runs the ablations on every row (the reference of the one-row
    ablations). A batch whose rows start with different tokens takes the every-row path."""
    check_head_index(cfg, hook, head_index)
    split = residual_split(hook) if shared_prefix else None

    def at_view(fn: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
        return lambda x: with_sae_output(x, fn(sae_input(x, head_index)), head_index)

    def variants(sae_params, act_mean) -> dict[str, Callable[[jax.Array], jax.Array]]:
        return {
            "sae": at_view(replace_after_bos(lambda x: decode(sae_params, encode(sae_params, x)))),
            "zero": at_view(replace_after_bos(jnp.zeros_like)),
            "mean": at_view(replace_after_bos(lambda x: jnp.broadcast_to(act_mean.astype(x.dtype), x.shape))),
        }

    def recon_sums(sae_params, act):  # act at the hook: (b, t, d), or (b, t, heads, d_head) at hook_z
        act = sae_input(act, head_index)  # (b, t, d_in)
        x = act[:, 1:].reshape(-1, act.shape[-1]).astype(jnp.float32)
        codes = encode(sae_params, x)
        return batch_sums(x, decode(sae_params, codes), codes)

    def full_forwards(model_params, sae_params, tokens, act_mean):
        def log_probs(hooks, cache=()):
            out = forward(model_params, cfg, tokens, None, HookContext(hooks=hooks, cache=cache))
            return jax.nn.log_softmax(out.logits[:, :-1]), out.cache

        clean, cache = log_probs({}, (hook,))
        lps = {name: log_probs({hook: fn})[0] for name, fn in variants(sae_params, act_mean).items()}
        return ce_kl_sums(tokens, clean, lps), recon_sums(sae_params, cache[hook])

    def shared_below(model_params, sae_params, tokens, act_mean, one_row_ablations):
        pad_mask = jnp.ones(tokens.shape, jnp.int32)
        positions = jnp.maximum(jnp.cumsum(pad_mask, axis=1) - 1, 0)
        x0 = embed(model_params, cfg, tokens, positions)
        act = run_blocks(model_params, cfg, x0, pad_mask, HookContext(), 0, split)  # (b, t, d) at the hook
        fns = variants(sae_params, act_mean)

        def log_probs(x):  # one variant through the blocks above the hook
            mask = pad_mask[: x.shape[0]]
            y = run_blocks(model_params, cfg, x, mask, HookContext(), split, cfg.n_layers)
            return jax.nn.log_softmax(unembed(model_params, cfg, y)[:, :-1])  # (rows, t - 1, vocab)

        ablated = act[:1] if one_row_ablations else act  # one row stands for all when they share token 0
        lps = {"sae": log_probs(fns["sae"](act))} | {k: log_probs(fns[k](ablated)) for k in ("zero", "mean")}
        out = ce_kl_sums(tokens, log_probs(act), lps)
        return out, recon_sums(sae_params, act)

    def run(model_params, sae_params, tokens, act_mean, one_row_ablations=False):
        if split is None:
            out, recon = full_forwards(model_params, sae_params, tokens, act_mean)
        else:
            out, recon = shared_below(model_params, sae_params, tokens, act_mean, one_row_ablations)
        return SpliceSums(n=jnp.asarray(tokens[:, 1:].size, jnp.float32), **out), recon

    every_row = jax.jit(run)
    if split is None or not shared_ablations:
        return every_row
    one_row = jax.jit(partial(run, one_row_ablations=True))

    def dispatch(model_params, sae_params, tokens, act_mean):
        first = np.asarray(tokens[:, 0])
        fn = one_row if (first == first[0]).all() else every_row
        return fn(model_params, sae_params, tokens, act_mean)

    return dispatch


def ce_kl_sums(tokens: jax.Array, clean_lp: jax.Array, lps: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Summed next-token CE of the clean log-probs and of each variant's, and each variant's summed
    KL(clean || variant); log-probs (b, t - 1, vocab) predict tokens[:, 1:] (a variant's may be one row,
    (1, t - 1, vocab), standing for every row)."""
    target = tokens[:, 1:, None]
    ce = lambda lp: -jnp.take_along_axis(jnp.broadcast_to(lp, clean_lp.shape), target, axis=-1).sum()
    p_clean = jnp.exp(clean_lp)
    neg_entropy = jnp.sum(p_clean * clean_lp)  # KL(p || q) = sum p log p - sum p log q, the first term shared
    p_rows = p_clean.sum(0, keepdims=True)  # (1, t - 1, vocab): what a one-row variant's cross term needs
    out = {"ce_clean": ce(clean_lp)}
    for name, lp in lps.items():
        out[f"ce_{name}"] = ce(lp)
        out[f"kl_{name}"] = neg_entropy - jnp.sum((p_rows if lp.shape[0] == 1 else p_clean) * lp)
    return out


def replace_after_bos(new: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """A hook (batch, seq, d) -> same that replaces positions 1.. by `new` of them (BOS kept clean)."""

    def hook_fn(x):
        b, t, d = x.shape
        y = new(x[:, 1:].reshape(-1, d)).reshape(b, t - 1, d)
        return x.at[:, 1:].set(y.astype(x.dtype))

    return hook_fn


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
