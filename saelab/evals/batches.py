"""The eval's batching and splice, shared by `saelab eval` (`saelab.evals.run`) and the trainer's in-training
evals (`saelab.train.evaluate`): held-out token batches, the compiled splice of an SAE, the mean-ablation value
and the running sums a batch adds to."""

from __future__ import annotations

import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from saelab.data import pack_for_model
from saelab.evals import metrics, splice
from saelab.models import Model
from saelab.models.hook_views import row_view, sae_input
from saelab.sae import decode, encode


def token_batches(corpus, model: Model, context: int, batch: int, tokens: int):
    """The eval's batches (batch, context) of token ids: whole batches until `tokens` are reached (a short last
    batch only when it is the first), the same for `saelab eval` and the trainer's in-training evals."""
    done = 0
    for b in pack_for_model(corpus, model, context=context, batch=batch):
        if done >= tokens or (b.tokens.shape[0] < batch and done):
            break
        yield jnp.asarray(b.tokens)
        done += b.tokens.size


def add_batch(fn, model: Model, sae_params, tokens: jax.Array, act_mean: jax.Array, splice_sums, recon_sums):
    """The running (splice, reconstruction) sums with one more batch of the compiled splice `fn`."""
    s, r = fn(model.params, sae_params, tokens, act_mean)
    return _add(splice_sums, s), metrics.add(recon_sums, r)


@functools.lru_cache(maxsize=8)
def splice_fn(model_cfg, hook: str, sae_cfg, head: int | None = None):
    """One compiled splice per (model, hook, SAE config) in a process: a second eval (another corpus) reuses it."""
    enc, dec = partial(_encode, cfg=sae_cfg), partial(_decode, cfg=sae_cfg)
    return splice.make_splice_fn(model_cfg, hook, enc, dec, head_index=head)


def mean_activation(
    store_dir: str | None, model: Model, hook: str, tokens: jax.Array, head: int | None = None
) -> jax.Array:
    """Mean-ablation value (d_in,) in the SAE's view of the hook: the training store's BOS-excluded mean when
    the store is here, else this batch's."""
    from saelab.store import ActivationStore, is_store

    if store_dir and is_store(store_dir):
        stats = ActivationStore(store_dir).stats(hook)
        mean = stats.get("mean_no_bos") if stats.get("mean_no_bos") is not None else stats.get("mean")
        if mean is not None:
            return row_view(model.cfg, hook, np.asarray(mean, np.float32), head)
    _, cache = model.run_with_cache(tokens, [hook], stop_at_layer="auto")
    act = sae_input(cache[hook], head)[:, 1:]  # (b, t - 1, d_in)
    return act.reshape(-1, act.shape[-1]).astype(jnp.float32).mean(0)


def _encode(params, x, cfg):
    return encode(params, x, cfg)


def _decode(params, codes, cfg):
    return decode(params, codes)


def _add(a, b):
    b = [np.asarray(v, np.float64) for v in b]
    return b if a is None else [x + y for x, y in zip(a, b, strict=False)]
