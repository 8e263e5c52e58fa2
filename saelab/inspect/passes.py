"""Dashboard statistics of every latent at once, as pure jitted steps over one batch of store tokens.

A batch holds whole context windows, so the activations around any token of the batch are in the batch too:
each kept example carries the latent's activation on its window (`Examples.window`), and no second pass is
needed to colour a context. Two passes over the store:

- `first_step`: firing count, sum and max of every latent, and its top-k activating tokens (a running top-k:
  the batch's candidates are sorted by (group, -activation) on device and merged with the kept ones). It also
  returns the batch's sparse codes, which the caller may keep so the second pass need not encode again.
- `second_step` (needs the max): histogram over (0, max], and random examples from equal-width activation
  intervals (the same merge, with random priorities), as in Anthropic's and sae_vis's dashboards. It works
  from sparse codes (kept from the first pass, or from `sparse_step`), so its window activations come from
  each token's kept latents: exact for TopK SAEs, and for others on every token not counted in `n_over`.

Groups are what examples are kept per: a latent in the first pass, a (latent, interval) pair in the second;
`group_of_latent` (d_sae,) maps each latent to its group (or to G, "not kept") so a subset of latents can be
inspected at the same cost.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from saelab.sae import SAEConfig, SAEParams, encode, get_architecture
from saelab.sae.codes import TopK, densify, top_k


class Examples(NamedTuple):
    """k examples per group, highest priority first."""

    prio: jax.Array  # (G, k) float32 sort key (the activation, or a random draw); -inf where empty
    token: jax.Array  # (G, k) int32 global token index in the store; -1 where empty
    value: jax.Array  # (G, k) float32 the latent's activation at that token
    window: jax.Array  # (G, k, left + 1 + right) float32 its activation on the tokens around it


class StoreBatch(NamedTuple):
    """One batch of whole windows from the store, padded to a fixed size."""

    x: jax.Array  # (B, d_in) activations, any float dtype
    start: jax.Array  # () int32 global index of row 0
    window_id: jax.Array  # (B,) int32 index - pos: equal within one context window
    doc: jax.Array  # (B,) int32 document index (relative to the batch)
    valid: jax.Array  # (B,) bool real tokens counted in the statistics (not padding, not BOS unless asked)


class Codes(NamedTuple):
    vals: jax.Array  # (B, m) float32 the m largest activations of each token (0 where not firing)
    idx: jax.Array  # (B, m) int32 their latents
    dense: jax.Array  # (B, d_sae) float32 all activations
    over: jax.Array  # (B,) bool tokens with more than m firing latents (their smallest were dropped)


class FirstPass(NamedTuple):
    n_tokens: jax.Array  # () int32 valid tokens seen
    n_over: jax.Array  # () int32 counted tokens with Codes.over
    count: jax.Array  # (d_sae,) int32 tokens on which the latent fired
    total: jax.Array  # (d_sae,) float32 sum of its activations
    max: jax.Array  # (d_sae,) float32 its largest activation (0 if it never fired)
    top: Examples  # (G, k) its top activating tokens
    xx: jax.Array  # (d_in + 1, d_in + 1) float32 sum of [x, 1][x, 1]^T over counted tokens (second moment,
    # sum and count in one GEMM) for the AIP metric; (0, 0) when not asked for


class SecondPass(NamedTuple):
    hist: jax.Array  # (d_sae, bins) int32 counts of non-zero activations in equal bins over (0, max]
    interval: Examples  # (G * n_intervals, per_interval) random examples of each activation interval


def empty_examples(groups: int, k: int, width: int) -> Examples:
    return Examples(
        jnp.full((groups, k), -jnp.inf, jnp.float32),
        jnp.full((groups, k), -1, jnp.int32),
        jnp.zeros((groups, k), jnp.float32),
        jnp.zeros((groups, k, width), jnp.float32),
    )


def init_first(d_sae: int, groups: int, k: int, width: int, d_moments: int = 0) -> FirstPass:
    """Empty first-pass state; `d_moments` = d_in to accumulate the moments of the inputs."""
    zeros = lambda dtype: jnp.zeros((d_sae,), dtype)  # separate buffers: the state is donated
    xx = jnp.zeros((d_moments + 1, d_moments + 1) if d_moments else (0, 0), jnp.float32)
    return FirstPass(
        jnp.int32(0),
        jnp.int32(0),
        zeros(jnp.int32),
        zeros(jnp.float32),
        zeros(jnp.float32),
        empty_examples(groups, k, width),
        xx,
    )


def init_second(d_sae: int, bins: int, groups: int, n_intervals: int, per_interval: int, width: int) -> SecondPass:
    hist = jnp.zeros((d_sae, bins), jnp.int32)
    return SecondPass(hist, empty_examples(groups * n_intervals, per_interval, width))


def sae_codes(params: SAEParams, x: jax.Array, cfg: SAEConfig, max_active: int) -> Codes:
    """Inference codes of a batch, sparse and dense. Architectures with exact sparse codes (TopK) give their k;
    the others keep each token's `max_active` largest and count the tokens that had more."""
    x = x.astype(jnp.float32)
    encode_sparse = get_architecture(cfg.architecture).encode_sparse
    if encode_sparse is not None:
        vals, idx = encode_sparse(params, x, cfg)  # (B, k) each
        return Codes(vals, idx, densify(vals, idx, params.d_sae), jnp.zeros(x.shape[0], bool))
    dense = encode(params, x, cfg)  # (B, d_sae)
    vals, idx = top_k(dense, min(max_active, params.d_sae))
    over = jnp.sum(dense > 0, axis=1) > vals.shape[1]
    return Codes(vals, idx, dense, over)


@partial(jax.jit, static_argnames=("cfg", "max_active"))
def sparse_step(params: SAEParams, x: jax.Array, *, cfg: SAEConfig, max_active: int) -> TopK:
    """Sparse codes of a batch (for a second pass that did not keep the first pass's)."""
    codes = sae_codes(params, x, cfg, max_active)
    return TopK(codes.vals, codes.idx)


@partial(jax.jit, static_argnames=("cfg", "max_active", "left", "right"), donate_argnums=(0,))
def first_step(
    state: FirstPass,
    params: SAEParams,
    batch: StoreBatch,
    group_of_latent: jax.Array,
    latent_of_group: jax.Array,
    *,
    cfg: SAEConfig,
    max_active: int,
    left: int,
    right: int,
) -> tuple[FirstPass, TopK]:
    """Add one batch to the first-pass state; also returns the batch's sparse codes (B, m)."""
    codes = sae_codes(params, batch.x, cfg, max_active)
    on = (codes.vals > 0) & batch.valid[:, None]  # (B, m)
    d_sae = state.count.shape[0]
    lat = jnp.where(on, codes.idx, d_sae)  # (B, m) out of range where not firing: dropped by the scatters
    count = state.count.at[lat].add(1, mode="drop")
    total = state.total.at[lat].add(codes.vals, mode="drop")
    mx = state.max.at[lat].max(codes.vals, mode="drop")
    groups = state.top.prio.shape[0]
    group = jnp.where(on, group_of_latent[codes.idx], groups)
    prio = jnp.where(on, codes.vals, -jnp.inf)
    top = offer(state.top, group, prio, codes.vals, codes.dense, latent_of_group, batch, left, right)
    n_tokens = state.n_tokens + jnp.sum(batch.valid).astype(jnp.int32)
    xx = state.xx
    if xx.shape[0]:
        x = jnp.concatenate([batch.x.astype(jnp.float32), jnp.ones((batch.x.shape[0], 1))], axis=1)
        x = jnp.where(batch.valid[:, None], x, 0.0)  # (B, d_in + 1)
        xx = xx + jnp.einsum("bi,bj->ij", x, x, precision=jax.lax.Precision.HIGHEST)
    n_over = state.n_over + jnp.sum(codes.over & batch.valid).astype(jnp.int32)
    state = FirstPass(n_tokens, n_over, count, total, mx, top, xx)
    return state, TopK(codes.vals, codes.idx)


@partial(jax.jit, static_argnames=("left", "right"), donate_argnums=(0,))
def second_step(
    state: SecondPass,
    codes: TopK,
    batch: StoreBatch,
    latent_max: jax.Array,
    key: jax.Array,
    group_of_latent: jax.Array,
    latent_of_group: jax.Array,
    *,
    left: int,
    right: int,
) -> SecondPass:
    """Add one batch's sparse codes (B, m) to the second-pass state; `latent_max` (d_sae,) is the first pass's."""
    vals, idx = codes
    on = (vals > 0) & batch.valid[:, None]  # (B, m)
    d_sae, bins = state.hist.shape
    frac = vals / jnp.maximum(latent_max[idx], 1e-30)  # (B, m) in (0, 1] where on
    lat = jnp.where(on, idx, d_sae)
    hist = state.hist.at[lat, _bin(frac, bins)].add(1, mode="drop")
    n_latents = latent_of_group.shape[0]
    groups = state.interval.prio.shape[0]
    n_int = groups // n_latents
    kept = on & (group_of_latent[idx] < n_latents)
    group = jnp.where(kept, group_of_latent[idx] * n_int + _bin(frac, n_int), groups)
    prio = jnp.where(kept, jax.random.uniform(key, vals.shape), -jnp.inf)
    dense = densify(jnp.where(vals > 0, vals, 0.0), idx, d_sae)  # (B, d_sae)
    per_interval_latent = jnp.repeat(latent_of_group, n_int)  # (G * n_int,)
    interval = offer(state.interval, group, prio, vals, dense, per_interval_latent, batch, left, right)
    return SecondPass(hist, interval)


def offer(
    ex: Examples,
    group: jax.Array,
    prio: jax.Array,
    value: jax.Array,
    dense: jax.Array,
    latent_of_group: jax.Array,
    batch: StoreBatch,
    left: int,
    right: int,
) -> Examples:
    """Merge a batch's candidates (B, m) (group index, priority, activation; group G = none) into `ex`.

    Sorting the B*m candidates by (group, -priority, row) puts each group's best first; a candidate's rank in
    its group is its distance from the group's first entry, and ranks < k are scattered into a (G, k) block
    that one top-k over (G, 2k) merges with the kept examples. Ties go to the earlier token.
    """
    n_groups, k = ex.prio.shape
    rows = jnp.broadcast_to(jnp.arange(group.shape[0], dtype=jnp.int32)[:, None], group.shape)  # (B, m)
    g, neg, row, val = jax.lax.sort((group.ravel(), -prio.ravel(), rows.ravel(), value.ravel()), num_keys=3)
    pos = jnp.arange(g.shape[0], dtype=jnp.int32)
    first = jnp.concatenate([jnp.ones((1,), bool), g[1:] != g[:-1]])
    rank = pos - jax.lax.cummax(jnp.where(first, pos, 0))  # place within the group
    slot = jnp.where((rank < k) & (g < n_groups), g, n_groups)  # out of range: dropped
    rank = jnp.minimum(rank, k - 1)
    c_prio = jnp.full((n_groups, k), -jnp.inf, jnp.float32).at[slot, rank].set(-neg, mode="drop")
    c_row = jnp.zeros((n_groups, k), jnp.int32).at[slot, rank].set(row, mode="drop")
    c_val = jnp.zeros((n_groups, k), jnp.float32).at[slot, rank].set(val, mode="drop")
    c_win = context_activations(c_row, latent_of_group, dense, batch, left, right)  # (G, k, width)
    filled = c_prio > -jnp.inf
    c_tok = jnp.where(filled, batch.start + c_row, -1)

    both = jnp.concatenate([ex.prio, c_prio], axis=1)  # (G, 2k): kept first, so ties keep the earlier token
    prio_out, j = jax.lax.top_k(both, k)
    pick = lambda a, b: jnp.take_along_axis(jnp.concatenate([a, b], axis=1), j, axis=1)
    window = jnp.take_along_axis(jnp.concatenate([ex.window, c_win], axis=1), j[..., None], axis=1)
    return Examples(prio_out, pick(ex.token, c_tok), pick(ex.value, c_val), window)


def context_activations(
    rows: jax.Array, latents: jax.Array, dense: jax.Array, batch: StoreBatch, left: int, right: int
) -> jax.Array:
    """(G, k, left + 1 + right) activation of latent `latents[g]` on the tokens around batch row `rows[g, j]`;
    0 outside the batch, the context window or the document."""
    offsets = jnp.arange(-left, right + 1, dtype=jnp.int32)
    r = rows[..., None] + offsets  # (G, k, width)
    n = dense.shape[0]
    rc = jnp.clip(r, 0, n - 1)
    same = (
        (r >= 0)
        & (r < n)
        & (batch.window_id[rc] == batch.window_id[rows][..., None])
        & (batch.doc[rc] == batch.doc[rows][..., None])
    )
    acts = dense[rc, latents[:, None, None]]
    return jnp.where(same, acts, 0.0)


def _bin(frac: jax.Array, bins: int) -> jax.Array:
    """Bin of a fraction of the max in (0, 1] among `bins` equal bins (the max itself in the last one)."""
    return jnp.clip(jnp.ceil(frac * bins).astype(jnp.int32) - 1, 0, bins - 1)
