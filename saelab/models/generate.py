"""Text generation with a KV cache: greedy or sampled (temperature, top-k, top-p, seed), stop tokens,
batched left-padded prompts, and hooks (SAE splices, latent edits, steering) applied at every step.

The whole loop is one jitted function: a prefill over the prompts, then a `lax.scan` of one-token steps,
each attending to the cache. Rows that produced a stop token keep running (shapes are static) but their
later tokens are masked out of the result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.models.hook_fns import LiftedHooks, call_lifted, lift_hooks
from saelab.models.hooks import HookContext, HookFn
from saelab.models.kv_cache import empty_cache
from saelab.models.transformer import forward_cached


class Sampling(NamedTuple):
    """How the next token is chosen. temperature 0 is greedy (argmax); otherwise logits / temperature are
    restricted to the `top_k` largest and to the smallest set whose probability reaches `top_p`."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    shared_noise: bool = False  # every row draws with the same noise (compare a clean and an edited row)

    def check(self, vocab_size: int) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if self.top_k is not None and not 1 <= self.top_k <= vocab_size:
            raise ValueError(f"top_k must be in [1, vocab_size={vocab_size}], got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


GREEDY = Sampling()
# One default length for every entry point (`Model.generate`, `SplicedModel.generate`, `saelab model generate`,
# `steer`); each also starts the prompt with the model's BOS token, as it was trained, when it has one.
DEFAULT_NEW_TOKENS = 32  # every entry point's default continuation length
PROMPT_BUCKET = 16  # prompts are left-padded to a multiple of this, so nearby lengths share a compiled loop


class Generation(NamedTuple):
    tokens: jax.Array  # (batch, max_new) int32; slots after a row's stop token hold `pad_id`
    lengths: jax.Array  # (batch,) int32: generated tokens per row, its stop token included


def next_token(logits: jax.Array, sampling: Sampling, key: jax.Array) -> jax.Array:
    """The next token (batch,) from last-position logits (batch, vocab) under `sampling`."""
    if sampling.temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    z = logits.astype(jnp.float32) / sampling.temperature
    neg = jnp.finfo(jnp.float32).min
    if sampling.top_k is not None:
        kth = jax.lax.top_k(z, sampling.top_k)[0][:, -1:]  # (batch, 1)
        z = jnp.where(z < kth, neg, z)
    if sampling.top_p is not None:
        order = jnp.argsort(-z, axis=-1)
        sorted_p = jax.nn.softmax(jnp.take_along_axis(z, order, axis=-1), axis=-1)
        before = jnp.cumsum(sorted_p, axis=-1) - sorted_p  # probability of the tokens ranked above
        drop_sorted = before >= sampling.top_p  # the first token is always kept
        drop = jnp.zeros_like(drop_sorted).at[jnp.arange(z.shape[0])[:, None], order].set(drop_sorted)
        z = jnp.where(drop, neg, z)
    shape = (1, z.shape[-1]) if sampling.shared_noise else z.shape
    return jnp.argmax(z + jax.random.gumbel(key, shape, z.dtype), axis=-1).astype(jnp.int32)


def generate(
    params: dict,
    cfg: ModelConfig,
    tokens: jax.Array,
    pad_mask: jax.Array,
    max_new_tokens: int,
    *,
    sampling: Sampling = GREEDY,
    seed: int = 0,
    stop_ids: tuple[int, ...] = (),
    pad_id: int = 0,
    hooks: Mapping[str, HookFn] | None = None,
    context: Callable[[Any], HookContext] | None = None,
    context_args: Any = None,
) -> Generation:
    """Continue left-padded prompts `tokens` (batch, n) with `pad_mask` (1 = real token) by up to
    `max_new_tokens` tokens each; `hooks` apply to the prompt and to every generated position.

    `context(context_args)` builds the hook context of every call instead (e.g. a spliced model's, which
    runs SAEs at their hooks); `context_args` is a pytree passed into the jitted loop as an argument, so
    SAE weights are not baked into the program as constants."""
    if context is not None and hooks:
        raise ValueError("pass hooks inside the context, or hooks without a context, not both")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if tokens.ndim != 2 or tokens.shape != pad_mask.shape:
        raise ValueError(f"tokens and pad_mask must both be (batch, seq), got {tokens.shape} and {pad_mask.shape}")
    sampling.check(cfg.vocab_size)
    toks, mask = jnp.asarray(tokens, jnp.int32), jnp.asarray(pad_mask, jnp.int32)

    def run(context: Callable[[Any], HookContext], context_args: Any) -> Generation:
        fn = _compiled(cfg, max_new_tokens, sampling, tuple(stop_ids), pad_id, context)
        return fn(params, toks, mask, jax.random.key(seed), context_args)

    if context is not None:
        return run(context, context_args)
    lifted, data = lift_hooks(hooks)
    return call_lifted(lambda lifted, data: run(_PlainContext(lifted), data), lifted, data)


class _PlainContext(NamedTuple):
    """Hooks by name, keyed by their lifted templates (`saelab.models.hook_fns`): hooks that differ only in
    the numbers and arrays they read reuse one compiled loop, those values passed in as data."""

    hooks: LiftedHooks

    def __call__(self, data: tuple) -> HookContext:
        return HookContext(hooks=self.hooks.bind(data))


def generate_model(
    model: Any,
    tokens: Any,
    pad_mask: Any,
    max_new_tokens: int,
    *,
    stop_ids: tuple[int, ...] = (),
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    shared_noise: bool = False,
    hooks: Mapping[str, HookFn] | None = None,
    context: Callable[[Any], HookContext] | None = None,
    context_args: Any = None,
) -> Generation:
    """`generate` with a `Model`'s weights and config on left-padded `tokens` (batch, n) and `pad_mask`, the
    sampling settings given one by one; rows pad with the first stop id (0 without one)."""
    return generate(
        model.params,
        model.cfg,
        jnp.asarray(tokens),
        jnp.asarray(pad_mask),
        max_new_tokens,
        sampling=Sampling(temperature, top_k, top_p, shared_noise),
        seed=seed,
        stop_ids=stop_ids,
        pad_id=stop_ids[0] if stop_ids else 0,
        hooks=hooks,
        context=context,
        context_args=context_args,
    )


def generate_text(
    model: Any,
    prompt: str | Sequence[str],
    max_new_tokens: int = DEFAULT_NEW_TOKENS,
    *,
    prepend_bos: bool = True,
    stop: Sequence[int] | None = None,
    **options: Any,
) -> str | list[str]:
    """Text in, text out for a `Model`: tokenise (left-padded batch; BOS first when `prepend_bos` and the
    model has one), `generate_model` (with `options`: the sampling settings, hooks and context it takes), decode
    each row up to its stop token (default stop: the model's EOS). A string prompt gives a string, a list a
    list; an empty prompt is an error."""
    texts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not texts:
        raise ValueError("no prompts given: pass a string or a non-empty list of strings")
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        which = "the prompt is" if isinstance(prompt, str) else f"prompts {empty} are"
        raise ValueError(f"{which} empty; give some text to continue (generation needs at least one token of it)")
    toks, mask = model.to_tokens(texts, prepend_bos=prepend_bos)
    toks, mask = bucket(toks, mask)
    stops = tuple(stop) if stop is not None else (() if model.eos_id is None else (model.eos_id,))
    out = generate_model(model, toks, mask, max_new_tokens, stop_ids=stops, **options)
    decoded = [
        model.tokenizer.decode([int(t) for t in row[:n] if int(t) not in stops])
        for row, n in zip(np.asarray(out.tokens), np.asarray(out.lengths), strict=True)
    ]
    return decoded[0] if isinstance(prompt, str) else decoded


def bucket(tokens: np.ndarray, pad_mask: np.ndarray, multiple: int = PROMPT_BUCKET) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad (masked) prompts to a multiple of `multiple` columns: the continuation is the same (padding is
    masked and positions count real tokens only) and prompts of nearby lengths share one compiled loop."""
    b, n = tokens.shape
    extra = -n % multiple
    if not extra:
        return tokens, pad_mask
    pad = np.zeros((b, extra), np.int32)
    return np.concatenate([pad, np.asarray(tokens, np.int32)], 1), np.concatenate([pad, np.asarray(pad_mask)], 1)


@functools.lru_cache(maxsize=32)  # compiled loops keyed by settings; weights and SAE params are arguments
def _compiled(cfg: ModelConfig, max_new: int, sampling: Sampling, stop_ids, pad_id: int, context):
    def run(params, tokens, pad_mask, key, context_args):
        b, n = tokens.shape
        slots = jnp.concatenate([pad_mask, jnp.ones((b, max_new), jnp.int32)], axis=1)
        kv = empty_cache(cfg, slots, params.embed.dtype)
        logits, kv = forward_cached(params, cfg, tokens, kv, context(context_args))
        stops = jnp.asarray(stop_ids if stop_ids else (-1,), jnp.int32)

        def step(carry, i):
            last, kv, done = carry
            tok = next_token(last, sampling, jax.random.fold_in(key, i))
            out = jnp.where(done, pad_id, tok)
            done = done | jnp.isin(tok, stops)
            logits, kv = forward_cached(params, cfg, tok[:, None], kv, context(context_args))
            return (logits[:, -1], kv, done), out

        init = (logits[:, -1], kv, jnp.zeros((b,), bool))
        _, toks = jax.lax.scan(step, init, jnp.arange(max_new))
        toks = toks.T  # (batch, max_new)
        is_stop = jnp.isin(toks, stops)
        first_stop = jnp.where(is_stop.any(1), jnp.argmax(is_stop, axis=1) + 1, max_new)
        return Generation(toks, first_stop.astype(jnp.int32))

    return jax.jit(run)
