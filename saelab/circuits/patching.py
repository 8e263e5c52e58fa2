"""Ground truth and baselines for circuit discovery: exact per-head activation patching, mean ablation and
attribution patching (docs/methods.md, "Circuits": the slow and the fast baseline of O'Neill & Bui).

Exact patching replaces head h's `attn.hook_z` on the positive prompts by its value on the paired negative
(or by its task mean) and measures the drop of the task metric, normalised by the gap between the positive
and negative baselines. Patching `hook_z` is the same as patching `hook_result` (one linear map per head).
All heads of a layer run in one vmapped call, and the blocks before the patched layer are not recomputed:
each starts from the cached clean residual stream (a `lax.cond` skips them), which halves the work on
average. Attribution patching (Nanda 2023) is its first-order estimate from one forward and one backward:
grad_z(metric) . (z_neg - z_pos), summed per head.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.circuits.metric import CORRECT_ABOVE, metric_fn, normalise
from saelab.circuits.tasks import TaskData
from saelab.models import HookContext, Model, ModelConfig, forward
from saelab.models.transformer import block, unembed
from saelab.runtime.progress import progress_bar

Source = Literal["negative", "mean"]


class Baselines(NamedTuple):
    """The task metric without intervention."""

    pos: float  # mean metric on positive prompts
    neg: float  # mean metric on negatives, scored with their pair's answer tokens
    accuracy: float  # fraction of positives solved (logit difference > 0, or P(later) > 0.5)
    neg_accuracy: float  # the same on negatives
    pos_each: np.ndarray  # (n,)
    neg_each: np.ndarray  # (n,)


class HeadEffects(NamedTuple):
    """Per-head effect of an intervention on the positives; positive = the head helps the task."""

    method: str
    effect: np.ndarray  # (n_layers, n_heads) normalised drop (pos - patched) / (pos - neg)
    drop: np.ndarray  # (n_layers, n_heads) drop in metric units
    runtime_s: float  # wall time, compilation included


def baselines(model: Model, task: TaskData) -> Baselines:
    """Mean metric and accuracy on positives and negatives (two forwards)."""
    run = _metric_fn(model.cfg, task.metric)
    pos = np.asarray(run(model.params, task.pos, task.mask, task.targets))
    neg = np.asarray(run(model.params, task.neg, task.mask, task.targets))
    above = CORRECT_ABOVE[task.metric]
    return Baselines(
        float(pos.mean()),
        float(neg.mean()),
        float((pos > above).mean()),
        float((neg > above).mean()),
        pos,
        neg,
    )


def exact_patching(
    model: Model,
    task: TaskData,
    base: Baselines,
    source: Source = "negative",
    *,
    chunk_tokens: int = 8192,
    progress: bool = False,
) -> HeadEffects:
    """Patch every head, one layer at a time with all its heads in one vmapped call.

    source="negative": the head's z from the paired negative prompt (activation patching);
    source="mean": its mean over all positive and negative prompts at each right-aligned position
    (mean ablation). `chunk_tokens` bounds n_heads * prompts * seq per call."""
    cfg = model.cfg
    t0 = time.perf_counter()
    chunk = max(1, min(task.n, chunk_tokens // (cfg.n_heads * task.pos.shape[1])))
    chunk = -(-task.n // -(-task.n // chunk))  # equal chunks: 40 pairs in 3 calls of 14, not 17 + 17 + 6 padded
    runner = _patched_runner(cfg, task.metric)
    cache = _cache_fn(cfg, tuple(_resid_names(cfg) + _z_names(cfg)))
    mean_z = _mean_z(model, task, chunk) if source == "mean" else None
    onehot = jnp.eye(cfg.n_heads, dtype=jnp.int32)
    total = np.zeros((cfg.n_layers, cfg.n_heads))
    batches = list(_chunks(task.n, chunk))
    with progress_bar("layer", enabled=progress) as bar:
        job = bar.add_task(f"{source} patching", total=len(batches) * cfg.n_layers, info="")
        for idx, real in batches:
            toks, mask = task.pos[idx], task.mask[idx]
            targets = {k: v[idx] for k, v in task.targets.items()}
            clean = cache(model.params, toks, mask)
            resid = jnp.stack([clean[n] for n in _resid_names(cfg)])  # (n_layers, b, s, d_model)
            src = cache(model.params, task.neg[idx], mask) if source == "negative" else None
            for layer in range(cfg.n_layers):
                name = f"blocks.{layer}.attn.hook_z"
                z = src[name] if src is not None else jnp.broadcast_to(mean_z[layer], clean[name].shape)
                # (heads, b): the metric with each head of `layer` patched in turn
                m = runner(model.params, jnp.int32(layer), onehot, resid, z, toks, mask, targets)
                total[layer] += np.asarray(m)[:, :real].sum(axis=1)
                bar.advance(job)
    patched = total / task.n
    drop = base.pos - patched
    effect = 1.0 - normalise(patched, base.pos, base.neg)
    return HeadEffects("patching" if source == "negative" else "mean-ablation", effect, drop, time.perf_counter() - t0)


def attribution_patching(model: Model, task: TaskData, base: Baselines) -> HeadEffects:
    """First-order estimate of `exact_patching(source="negative")`: one forward on the negatives for z_neg,
    one forward and backward on the positives."""
    t0 = time.perf_counter()
    cfg = model.cfg
    z_neg = _cache_fn(cfg, tuple(_z_names(cfg)))(model.params, task.neg, task.mask)
    attr = _attribution_fn(cfg, task.metric)(
        model.params, task.pos, task.mask, task.targets, [z_neg[n] for n in _z_names(cfg)]
    )
    estimate = np.asarray(attr) / task.n  # (n_layers, n_heads) estimated change of the mean metric
    drop = -estimate
    effect = 1.0 - normalise(base.pos + estimate, base.pos, base.neg)
    return HeadEffects("attribution", effect, drop, time.perf_counter() - t0)


def eap_ig(model: Model, task: TaskData, base: Baselines, steps: int = 5) -> HeadEffects:
    """EAP-IG at head level (Hanna et al. 2024, "Have faith in faithfulness"): attribution patching with the
    gradient averaged over `steps` points on the straight line from the positive prompts' input embeddings
    (`blocks.0.hook_resid_pre`) to the paired negatives', alpha = k / steps for k = 0..steps-1:
    sum_k grad_z(metric)(alpha_k) . (z_neg - z_pos) / steps per head. steps=1 is attribution patching;
    `steps` forward-backward passes in all."""
    if steps < 1:
        raise ValueError(f"EAP-IG needs at least one step, got {steps}")
    t0 = time.perf_counter()
    cfg = model.cfg
    names = (*_z_names(cfg), "blocks.0.hook_resid_pre")
    neg = _cache_fn(cfg, names)(model.params, task.neg, task.mask)
    alphas = jnp.arange(steps, dtype=jnp.float32) / steps
    attr = _eap_ig_fn(cfg, task.metric)(
        model.params,
        task.pos,
        task.mask,
        task.targets,
        [neg[n] for n in _z_names(cfg)],
        neg["blocks.0.hook_resid_pre"],
        alphas,
    )
    estimate = np.asarray(attr) / task.n
    effect = 1.0 - normalise(base.pos + estimate, base.pos, base.neg)
    return HeadEffects("eap-ig", effect, -estimate, time.perf_counter() - t0)


def tail_logits(
    params: dict,
    cfg: ModelConfig,
    tokens: jax.Array,
    mask: jax.Array,
    hooks: dict[str, Callable[[jax.Array], jax.Array]] | None = None,
    cache: Sequence[str] = (),
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Logits at the last two positions only (b, 2, vocab) and the cache: the unembedding of every position
    would cost a quarter of a small model's forward and no metric reads it."""
    last = f"blocks.{cfg.n_layers - 1}.hook_resid_post"
    out = forward(params, cfg, tokens, mask, HookContext(hooks=hooks, cache=(*cache, last)), cfg.n_layers)
    return unembed(params, cfg, out.cache[last][:, -2:]), out.cache


def _resid_names(cfg: ModelConfig) -> list[str]:
    return [f"blocks.{i}.hook_resid_pre" for i in range(cfg.n_layers)]


def _z_names(cfg: ModelConfig) -> list[str]:
    return [f"blocks.{i}.attn.hook_z" for i in range(cfg.n_layers)]


def _chunks(n: int, size: int):
    """(indices, real count) per chunk; the last chunk is padded with row 0 so every call has one shape."""
    for s in range(0, n, size):
        real = min(size, n - s)
        yield np.concatenate([np.arange(s, s + real), np.zeros(size - real, int)]), real


def _mean_z(model: Model, task: TaskData, chunk: int) -> list[jax.Array]:
    """Per layer, z averaged over all positive and negative prompts at each right-aligned position."""
    cache = _cache_fn(model.cfg, tuple(_z_names(model.cfg)))
    sums, count = None, np.zeros(task.mask.shape[1])
    for toks in (task.pos, task.neg):
        for idx, real in _chunks(task.n, chunk):
            idx = idx[:real]
            m = task.mask[idx]
            zs = cache(model.params, toks[idx], m)
            part = [jnp.einsum("bshd,bs->shd", zs[n], m.astype(np.float32)) for n in _z_names(model.cfg)]
            sums = part if sums is None else [a + b for a, b in zip(sums, part, strict=True)]
            count += m.sum(axis=0)
    return [s / np.maximum(count, 1)[:, None, None] for s in sums]  # each (seq, heads, d_head)


# The lru_caches below hold compiled programs keyed by model config, never weights (params are arguments).
@functools.lru_cache(maxsize=32)
def _metric_fn(cfg: ModelConfig, metric: str):
    fn = metric_fn(metric)
    return jax.jit(lambda params, toks, mask, t: fn(tail_logits(params, cfg, toks, mask)[0], t))


@functools.lru_cache(maxsize=32)
def _cache_fn(cfg: ModelConfig, names: tuple[str, ...]):
    return jax.jit(
        lambda params, toks, mask: (
            forward(
                params, cfg, toks, mask, HookContext(cache=names), max(int(n.split(".")[1]) for n in names) + 1
            ).cache
        )
    )


@functools.lru_cache(maxsize=32)
def _patched_runner(cfg: ModelConfig, metric: str):
    """jit(vmap over heads) of: metric on positives with head `onehot` of `layer` patched to `src_z`."""
    fn, last = metric_fn(metric), cfg.n_layers - 1

    def one(params, layer, onehot, resid, src_z, toks, mask, targets):
        # resid: (n_layers, b, s, d_model) clean resid_pre; src_z: (b, s, n_heads, d_head); onehot: (n_heads,)
        positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)  # as in models.transformer.forward
        x = resid[0]
        for i in range(cfg.n_layers):
            sel = (onehot.astype(bool) & (layer == i))[None, None, :, None]
            ctx = HookContext(hooks={f"blocks.{i}.attn.hook_z": lambda z, sel=sel: jnp.where(sel, src_z, z)})

            def run(x, i=i, ctx=ctx):
                return block(params.layers[i], cfg, i, x, positions, mask, ctx)

            x = run(x) if i == last else jax.lax.cond(i < layer, lambda _, i=i: resid[i + 1], run, x)
        return fn(unembed(params, cfg, x[:, -2:]), targets)

    return jax.jit(jax.vmap(one, in_axes=(None, None, 0, None, None, None, None, None)))


@functools.lru_cache(maxsize=32)
def _attribution_fn(cfg: ModelConfig, metric: str):
    fn, names = metric_fn(metric), tuple(_z_names(cfg))

    def total(deltas, params, toks, mask, targets):
        hooks = {n: (lambda z, d=d: z + d) for n, d in zip(names, deltas, strict=True)}
        logits, cache = tail_logits(params, cfg, toks, mask, hooks, names)
        return fn(logits, targets).sum(), [cache[n] for n in names]

    def attr(params, toks, mask, targets, z_neg):
        zeros = [jnp.zeros_like(z) for z in z_neg]
        grads, z_pos = jax.grad(total, has_aux=True)(zeros, params, toks, mask, targets)
        return jnp.stack(
            [jnp.einsum("bshd,bshd->h", g, zn - zp) for g, zn, zp in zip(grads, z_neg, z_pos, strict=True)]
        )  # (n_layers, n_heads), summed over prompts

    return jax.jit(attr)


@functools.lru_cache(maxsize=32)
def _eap_ig_fn(cfg: ModelConfig, metric: str):
    fn, names = metric_fn(metric), tuple(_z_names(cfg))
    embed = "blocks.0.hook_resid_pre"

    def total(deltas, alpha, emb_neg, params, toks, mask, targets):
        hooks = {n: (lambda z, d=d: z + d) for n, d in zip(names, deltas, strict=True)}
        hooks[embed] = lambda x: x + alpha * (emb_neg - x)
        logits, _ = tail_logits(params, cfg, toks, mask, hooks)
        return fn(logits, targets).sum()

    def ig(params, toks, mask, targets, z_neg, emb_neg, alphas):
        z_pos = _cache_fn(cfg, names)(params, toks, mask)
        zeros = [jnp.zeros_like(z) for z in z_neg]

        def step(acc, alpha):
            g = jax.grad(total)(zeros, alpha, emb_neg, params, toks, mask, targets)
            return [a + b for a, b in zip(acc, g, strict=True)], None

        grads, _ = jax.lax.scan(step, zeros, alphas)
        return (
            jnp.stack(
                [jnp.einsum("bshd,bshd->h", g, zn - z_pos[n]) for g, zn, n in zip(grads, z_neg, names, strict=True)]
            )
            / alphas.shape[0]
        )

    return jax.jit(ig)
