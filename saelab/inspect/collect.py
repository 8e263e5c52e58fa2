"""Stream a store through the two jitted passes and bring the dashboards' activation statistics home."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.inspect import passes
from saelab.runtime.progress import progress_bar
from saelab.sae import LoadedSAE, get_architecture
from saelab.store import ActivationStore
from saelab.whitening import Moments


class Contexts(NamedTuple):
    """Examples of each kept latent with the tokens around them."""

    token: np.ndarray  # (n, k) int64 global store index of the example token; -1 where empty
    value: np.ndarray  # (n, k) float32 activation there
    ids: np.ndarray  # (n, k, width) int32 token ids around it; -1 outside the window or document
    acts: np.ndarray  # (n, k, width) float32 the latent's activation on them


class ActivationStats(NamedTuple):
    """Everything the dashboards take from activations. Rows of `top`, `intervals` follow `latents`."""

    latents: np.ndarray  # (n,) int64 the latents examples were kept for
    n_tokens: int  # tokens counted
    n_over: int  # tokens with more firing latents than `max_active` (0 for TopK SAEs)
    count: np.ndarray  # (d_sae,) int64 tokens each latent fired on
    mean: np.ndarray  # (d_sae,) float32 mean activation where firing (0 if never)
    max: np.ndarray  # (d_sae,) float32
    hist: np.ndarray  # (d_sae, bins) int64 over (0, max]
    top: Contexts  # (n, top_k)
    intervals: Contexts  # (n, n_intervals * per_interval), interval i at columns [i*per, (i+1)*per)
    moments: Moments | None  # of the activations, when asked for


def collect(
    sae: LoadedSAE,
    store: ActivationStore,
    hook: str,
    *,
    tokens: int,
    batch_windows: int = 32,
    latents: np.ndarray | None = None,
    top_k: int = 20,
    quantiles: int = 5,
    per_quantile: int = 3,
    bins: int = 32,
    left: int = 12,
    right: int = 4,
    max_active: int = 256,
    include_bos: bool = False,
    moments: bool = False,
    seed: int = 0,
    cache_bytes: int = 1 << 30,
    progress: bool = True,
) -> ActivationStats:
    """Two passes over the first `tokens` tokens of `store` (whole windows) for all latents (or `latents`).

    The first pass's sparse codes are kept for the second when they fit in `cache_bytes` (TopK at 200k tokens
    and k 32: 51 MB), so the encoder runs once; otherwise the second pass encodes again.
    """
    d_sae = sae.cfg.d_sae
    latents = np.arange(d_sae) if latents is None else np.asarray(latents, np.int64)
    if latents.size == 0 or latents.min() < 0 or latents.max() >= d_sae:
        raise ValueError(f"latents must lie in [0, {d_sae}), got {latents.tolist()[:10]}")
    if store.n_tokens >= 2**31:
        raise ValueError(f"store {store.path} has {store.n_tokens:,} tokens; inspect indexes them with int32")
    context = int(store.meta.get("context") or 128)
    n = min(tokens, store.n_tokens)
    n = max(context, n // context * context) if store.n_tokens >= context else store.n_tokens
    n_latents = len(latents)
    group_of_latent = np.full(d_sae, n_latents, np.int32)
    group_of_latent[latents] = np.arange(n_latents)
    groups = (jnp.asarray(group_of_latent), jnp.asarray(latents, jnp.int32))
    width = left + 1 + right
    p = _Pass(store, hook, n, batch_windows * context, include_bos, jax.device_put(sae.params), groups)
    state1 = passes.init_first(d_sae, n_latents, top_k, width, sae.cfg.d_in if moments else 0)
    m = sae.cfg.k if get_architecture(sae.cfg.architecture).encode_sparse else min(max_active, d_sae)
    with progress_bar("tok/s", progress) as bar:
        kw = {"cfg": sae.cfg, "max_active": max_active, "left": left, "right": right}
        state1, cache = _first_pass(p, state1, n * m * 8 <= cache_bytes, kw, bar)
        state2 = passes.init_second(d_sae, bins, n_latents, quantiles, per_quantile, width)
        state2 = _second_pass(p, state2, state1.max, cache, jax.random.key(seed), (sae.cfg, m, left, right), bar)
    s1, s2 = jax.device_get((state1, state2))
    count = s1.count.astype(np.int64)
    mean = np.where(count > 0, s1.total / np.maximum(count, 1), 0).astype(np.float32)
    per = per_quantile * quantiles
    inter = passes.Examples(*(a.reshape(n_latents, per, *a.shape[2:]) for a in s2.interval))
    return ActivationStats(
        latents,
        int(s1.n_tokens),
        int(s1.n_over),
        count,
        mean,
        s1.max,
        s2.hist.astype(np.int64),
        contexts(store, s1.top, left, right),
        contexts(store, inter, left, right),
        _moments(s1.xx),
    )


class _Pass(NamedTuple):
    """What both passes read: the store's first `n` tokens at `hook` in batches of `size` rows, the SAE's
    parameters on the device and the latent groups (group of each latent, kept latents)."""

    store: ActivationStore
    hook: str
    n: int
    size: int
    include_bos: bool
    params: object
    groups: tuple[jax.Array, jax.Array]


def _first_pass(p: _Pass, state, keep_codes: bool, kw: dict, bar) -> tuple[object, list | None]:
    """Counts, maxima, top contexts (and moments); the batches' sparse codes too when `keep_codes`, so the
    second pass need not encode again."""
    cache: list | None = [] if keep_codes else None
    task = bar.add_task("inspect: pass 1/2", total=p.n, info="counts, max, top contexts")
    for b, real in batches(p.store, p.hook, p.n, p.size, p.include_bos):
        state, codes = passes.first_step(state, p.params, b, *p.groups, **kw)
        if cache is not None:
            cache.append(codes)
        bar.update(task, advance=real)
    return state, cache


def _second_pass(p: _Pass, state, latent_max, cache: list | None, key: jax.Array, spec: tuple, bar):
    """Histograms and interval examples over (0, max] of each latent; `spec` is (SAE config, codes per token,
    left, right)."""
    cfg, m, left, right = spec
    task = bar.add_task("inspect: pass 2/2", total=p.n, info="histograms, interval examples")
    for i, (b, real) in enumerate(batches(p.store, p.hook, p.n, p.size, p.include_bos, with_x=cache is None)):
        codes = cache[i] if cache is not None else passes.sparse_step(p.params, b.x, cfg=cfg, max_active=m)
        state = passes.second_step(
            state, codes, b, latent_max, jax.random.fold_in(key, i), *p.groups, left=left, right=right
        )
        bar.update(task, advance=real)
    return state


def batches(
    store: ActivationStore, hook: str, n: int, size: int, include_bos: bool, with_x: bool = True
) -> Iterator[tuple[passes.StoreBatch, int]]:
    """(batch padded to `size` rows, real rows) over the store's first n tokens; x is None unless `with_x`."""
    acts = store.activations(hook)
    for start in range(0, n, size):
        stop = min(start + size, n)
        idx = np.arange(start, stop)
        x = acts[start:stop] if with_x else np.zeros((stop - start, 0), np.float32)
        pos = store.pos[start:stop].astype(np.int64)
        doc = store.doc[start:stop]
        valid = np.ones(stop - start, bool) if include_bos else pos != 0
        window = idx - pos - start  # equal within one context window
        pad = size - (stop - start)
        if pad:  # padding rows: never counted, and in no window, so no context reaches into them
            x = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)])
            window = np.concatenate([window, np.full(pad, -(2**30))])
            doc = np.concatenate([doc, np.full(pad, doc[-1])])
            valid = np.concatenate([valid, np.zeros(pad, bool)])
        yield (
            passes.StoreBatch(
                jnp.asarray(x) if with_x else None,
                jnp.int32(start),
                jnp.asarray(window, jnp.int32),
                jnp.asarray(doc - doc[0], jnp.int32),
                jnp.asarray(valid),
            ),
            stop - start,
        )


def _moments(xx: np.ndarray) -> Moments | None:
    """Moments from the augmented second moment sum [x, 1][x, 1]^T (None when not asked)."""
    if xx.shape[0] == 0:
        return None
    xx = np.asarray(xx, np.float64)
    d = xx.shape[0] - 1
    return Moments(float(xx[d, d]), np.zeros(d), xx[:d, d].copy(), xx[:d, :d].copy())


def contexts(store: ActivationStore, ex: passes.Examples, left: int, right: int) -> Contexts:
    """Token ids around every example, read back from the store (same window and document only)."""
    token = np.asarray(ex.token, np.int64)  # (n, k)
    where = token[..., None] + np.arange(-left, right + 1)  # (n, k, width)
    inside = (token[..., None] >= 0) & (where >= 0) & (where < store.n_tokens)
    rows = np.where(inside, where, 0)
    centre = np.broadcast_to(np.clip(token, 0, None)[..., None], where.shape)
    need = np.unique(np.concatenate([rows.ravel(), centre.ravel()]))  # each token read once, in file order

    def lookup(view, r: np.ndarray) -> np.ndarray:
        return view.take(need)[np.searchsorted(need, r)]

    pos, doc = lookup(store.pos, rows).astype(np.int64), lookup(store.doc, rows)
    c_pos, c_doc = lookup(store.pos, centre).astype(np.int64), lookup(store.doc, centre)
    same = inside & (rows - pos == centre - c_pos) & (doc == c_doc)
    ids = np.where(same, lookup(store.tokens, rows), -1).astype(np.int32)
    acts = np.where(same, np.asarray(ex.window), 0).astype(np.float32)
    return Contexts(token, np.asarray(ex.value, np.float32), ids, acts)
