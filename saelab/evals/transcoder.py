"""CE loss recovered and KL of a transcoder spliced in place of the MLP it was trained to imitate.

The transcoder reads its input hook (e.g. `blocks.L.ln2.hook_normalized`, the MLP's input) and its output
replaces the output hook (`blocks.L.hook_mlp_out`) at positions 1.. of the same forward pass, so the blocks
above see the transcoder's MLP. The baselines ablate the MLP itself: its output zeroed (CE recovered against
it, as the SAE eval reports against a zeroed hook) and replaced by its mean. Reconstruction metrics (EV, L0,
...) compare the transcoder's output with the clean output hook. The same `(SpliceSums, Sums)` come back as
from `saelab.evals.splice.make_splice_fn`, so `saelab eval` treats an SAE and a transcoder alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from saelab.evals.metrics import Sums, batch_sums
from saelab.evals.splice import SpliceSums, ce_kl_sums, replace_after_bos
from saelab.models import HookContext, forward
from saelab.models.config import ModelConfig
from saelab.models.hooks import BLOCK_HOOKS, hook_layer
from saelab.sae import SAEConfig, encode
from saelab.sae.registry import forward as transcode

SpliceFn = Callable[[dict, object, jax.Array, jax.Array], tuple[SpliceSums, Sums]]
Output = Callable[[object, jax.Array], jax.Array]  # (params, x (n, d_in)) -> y_hat (n, d_out)
Codes = Callable[[object, jax.Array], jax.Array]  # (params, x (n, d_in)) -> codes (n, d_sae)


def check_hook_order(hook_in: str, hook_out: str) -> None:
    """ValueError unless `hook_in` comes before `hook_out` in the forward pass (the splice reads the input
    first, then replaces the output in the same pass)."""
    order = lambda h: (hook_layer(h), BLOCK_HOOKS.index(h.split(".", 2)[2]))
    if order(hook_in) >= order(hook_out):
        raise ValueError(
            f"a transcoder's input hook must come before its output hook in the forward pass; got {hook_in} -> "
            f"{hook_out} (e.g. blocks.L.ln2.hook_normalized -> blocks.L.hook_mlp_out)"
        )


@functools.lru_cache(maxsize=8)
def transcoder_splice_fn(model_cfg: ModelConfig, hook_in: str, hook_out: str, sae_cfg: SAEConfig) -> SpliceFn:
    """`make_transcoder_splice_fn` for a saelab transcoder; one compiled function per (model, hooks, config)."""
    return make_transcoder_splice_fn(
        model_cfg,
        hook_in,
        hook_out,
        functools.partial(_output, cfg=sae_cfg),
        functools.partial(_codes, cfg=sae_cfg),
    )


def make_transcoder_splice_fn(
    model_cfg: ModelConfig, hook_in: str, hook_out: str, output: Output, codes: Codes
) -> SpliceFn:
    """Jitted (model_params, transcoder_params, tokens (b, t), out_mean (d_out,)) -> (SpliceSums, Sums): the
    clean, transcoder-spliced (`output` of the input hook), zero- and mean-ablated output hook, and the
    reconstruction sums of the output hook at positions 1.. ."""
    check_hook_order(hook_in, hook_out)

    def run(model_params, tc_params, tokens, out_mean):
        def log_probs(hooks, cache=()):
            out = forward(model_params, model_cfg, tokens, None, HookContext(hooks=hooks, cache=cache))
            return jax.nn.log_softmax(out.logits[:, :-1]), out.cache

        seen: dict[str, jax.Array] = {}  # the input hook's value, read earlier in the same traced forward

        def capture(x):
            seen["x"] = x
            return x

        def spliced(y):  # y (b, t, d_out) at the output hook
            b, t, _ = y.shape
            x = seen["x"][:, 1:].reshape(b * (t - 1), -1).astype(jnp.float32)  # (n, d_in)
            y_hat = output(tc_params, x).reshape(b, t - 1, -1)
            return y.at[:, 1:].set(y_hat.astype(y.dtype))

        clean, cache = log_probs({}, (hook_in, hook_out))
        mean = lambda y: jnp.broadcast_to(out_mean.astype(y.dtype), y.shape)
        lps = {
            "sae": log_probs({hook_in: capture, hook_out: spliced})[0],
            "zero": log_probs({hook_out: replace_after_bos(jnp.zeros_like)})[0],
            "mean": log_probs({hook_out: replace_after_bos(mean)})[0],
        }
        x = cache[hook_in][:, 1:].reshape(-1, cache[hook_in].shape[-1]).astype(jnp.float32)
        y = cache[hook_out][:, 1:].reshape(-1, cache[hook_out].shape[-1]).astype(jnp.float32)
        recon = batch_sums(y, output(tc_params, x), codes(tc_params, x))
        n = jnp.asarray(tokens[:, 1:].size, jnp.float32)
        return SpliceSums(n=n, **ce_kl_sums(tokens, clean, lps)), recon

    return jax.jit(run)


def _output(params, x, cfg):
    return transcode(params, x, cfg)


def _codes(params, x, cfg):
    return encode(params, x, cfg)
