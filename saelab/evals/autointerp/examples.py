"""A latent's examples for autointerp, read from an activation store: top-activating contexts (shown to the
explainer), activating contexts sampled across activation intervals (the scorers' positives, as delphi samples
its test set by quantile) and random contexts where the latent never fires (the negatives).

Activating contexts come from `saelab.inspect.collect` (the dashboards' own two passes, so an explanation is
written from the contexts its dashboard page shows); negatives are random windows of the same scanned tokens,
encoded here, kept where the latent is zero on every shown token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from saelab.inspect.collect import ActivationStats, Contexts, collect
from saelab.sae import LoadedSAE
from saelab.store import ActivationStore


class ExampleSet(NamedTuple):
    """Contexts of one latent: each context's tokens as text and the latent's activation on each of them."""

    tokens: list[list[str]]  # per context, its tokens (BOS and tokens outside its window dropped)
    acts: list[np.ndarray]  # per context, (len(tokens),) float32 the latent's activation on each token


class LatentExamples(NamedTuple):
    latent: int
    train: ExampleSet  # top-activating contexts, shown to the explainer
    test: ExampleSet  # activating contexts across activation intervals, none of them in `train`
    negative: ExampleSet  # contexts where the latent is zero on every token


class Scan(NamedTuple):
    """Where examples are read: the SAE, the store and hook, and how much of it."""

    sae: LoadedSAE
    store: ActivationStore
    hook: str
    tokens: int  # tokens scanned from the store's start
    left: int  # context tokens before the example token
    right: int  # and after it


def gather(
    scan: Scan,
    latents: np.ndarray,
    decode: Callable[[Sequence[int]], list[str]],
    *,
    n_explain: int,
    n_test: int,
    n_negative_windows: int = 512,
    seed: int = 0,
    progress: bool = False,
) -> tuple[list[LatentExamples], ActivationStats]:
    """The examples of each latent in `latents` (and the scan's statistics: counts of every latent);
    `decode` maps token ids to their texts. Latents that fire on fewer tokens than asked for get fewer
    examples (the caller decides whether to score them)."""
    quantiles = 5
    stats = collect(
        scan.sae,
        scan.store,
        scan.hook,
        tokens=scan.tokens,
        latents=latents,
        top_k=n_explain,
        quantiles=quantiles,
        per_quantile=-(-2 * n_test // quantiles),  # twice what is needed: some are top contexts, dropped
        left=scan.left,
        right=scan.right,
        seed=seed,
        progress=progress,
    )
    rng = np.random.default_rng(seed)
    neg_ids, neg_acts = negative_windows(scan, stats.latents, n_negative_windows, rng)
    bos = scan.store.meta.get("bos_id")
    drop = -1 if bos is None else int(bos)  # BOS opens windows; it is no part of a context's text
    out = []
    for r, lat in enumerate(stats.latents):
        train = _example_set(stats.top, r, slice(None), decode, drop)
        test_cols = _test_columns(stats, r, n_test, rng)
        test = _example_set(stats.intervals, r, test_cols, decode, drop)
        quiet = np.flatnonzero(~(neg_acts[:, :, r] > 0).any(1))[: len(test.tokens)]  # (n_negative,) windows
        negative = ExampleSet(
            [decode([int(t) for t in neg_ids[w] if t >= 0]) for w in quiet],
            [np.zeros(int((neg_ids[w] >= 0).sum()), np.float32) for w in quiet],
        )
        out.append(LatentExamples(int(lat), train, test, negative))
    return out, stats


def _test_columns(stats: ActivationStats, r: int, n_test: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `n_test` interval examples of row r that are not among its top contexts, spread over the intervals
    (a random draw from the filled ones, kept in interval order)."""
    tokens = stats.intervals.token[r]
    fresh = (tokens >= 0) & ~np.isin(tokens, stats.top.token[r])
    _, first = np.unique(tokens, return_index=True)  # an interval example drawn twice counts once
    once = np.zeros_like(fresh)
    once[first] = True
    cols = np.flatnonzero(fresh & once)
    if len(cols) > n_test:
        cols = np.sort(rng.choice(cols, n_test, replace=False))
    return cols


def _example_set(c: Contexts, r: int, cols: slice | np.ndarray, decode: Callable, drop: int) -> ExampleSet:
    """The filled contexts of row r at `cols`, each cut to its tokens inside its window, token `drop` (BOS)
    left out."""
    tokens, acts = [], []
    for j in np.arange(c.token.shape[1])[cols]:
        if c.token[r, j] < 0:
            continue
        keep = (c.ids[r, j] >= 0) & (c.ids[r, j] != drop)
        tokens.append(decode([int(t) for t in c.ids[r, j][keep]]))
        acts.append(np.asarray(c.acts[r, j][keep], np.float32))
    return ExampleSet(tokens, acts)


def negative_windows(
    scan: Scan, latents: np.ndarray, n: int, rng: np.random.Generator, chunk: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """`n` random windows of the scanned tokens (centre not a BOS): token ids (n, width), -1 for tokens
    outside the centre's window or document and for BOS, and the activations of `latents` there
    (n, width, len(latents)), 0 at those excluded tokens."""
    store, width = scan.store, scan.left + 1 + scan.right
    n_scan = min(scan.tokens, store.n_tokens)
    pos_all = np.asarray(store.pos[:n_scan]).astype(np.int64)
    candidates = np.flatnonzero(pos_all > 0)
    if len(candidates) == 0:
        raise ValueError(f"store {store.path} has no tokens past BOS in its first {n_scan} tokens")
    centre = rng.choice(candidates, min(n, len(candidates)), replace=False)  # random order: negatives are its first
    where = centre[:, None] + np.arange(-scan.left, scan.right + 1)  # (n, width)
    inside = (where >= 0) & (where < n_scan)
    rows = np.where(inside, where, 0)
    need = np.unique(rows)  # each token read once, in file order
    at = np.searchsorted(need, rows)
    pos = np.asarray(store.pos.take(need)).astype(np.int64)[at]
    doc = np.asarray(store.doc.take(need))[at]
    c_pos, c_doc = pos_all[centre][:, None], np.asarray(store.doc.take(centre))[:, None]
    valid = inside & (rows - pos == centre[:, None] - c_pos) & (doc == c_doc) & (pos > 0)
    ids = np.where(valid, np.asarray(store.tokens.take(need))[at], -1).astype(np.int32)
    x = store.activations(scan.hook).take(need, np.float32)  # (len(need), d_in)
    lat = np.asarray(latents, np.int64)
    step = chunk * width
    codes = np.concatenate([np.asarray(scan.sae.encode(x[s : s + step]))[:, lat] for s in range(0, len(x), step)])
    # codes: (len(need), n_latents)
    acts = np.where(valid[..., None], codes[at], 0.0).astype(np.float32)
    return ids, acts
