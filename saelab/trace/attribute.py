"""`attribute`: one prompt's attribution graph through the local replacement model (circuit-tracer 0.5's
`attribute`).

1. One clean forward (`saelab.trace.linearize.record`) freezes the attention patterns and norm scales and
   gives each layer's MLP input and output.
2. The transcoders encode the MLP inputs: the active features (position 0, the BOS, zeroed as circuit-tracer
   does), and each layer's error node `mlp_out - reconstruction` (zero at position 0).
3. Logit targets: the top `max_n_logits` tokens at the last position until their probability sums to
   `desired_logit_prob` (circuit-tracer's salient logits), or the tokens asked for; each reads the
   unembedding row minus the vocabulary's mean row.
4. Rows, logits first then features, in batches through `saelab.trace.edges`. With `max_feature_nodes`
   below the active count (circuit-tracer's rule), features are visited in order of their influence on the
   logits estimated from the rows so far (`partial_influences`, re-ranked every `update_interval` batches)
   until that many are attributed; the graph keeps only those feature nodes, and the rows are held in one
   (max_feature_nodes + logits, nodes) buffer, so memory is O(max_feature_nodes x nodes).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.model import Model
from saelab.runtime.progress import progress_bar
from saelab.trace.edges import Rows, bucket, edge_fn, pad_frozen, pad_to, sources
from saelab.trace.graph import Graph, LogitTarget
from saelab.trace.linearize import record
from saelab.trace.transcoders import TraceTranscoders, decoder_pairs, encode_all, encoder_vectors, skip_matrices


def attribute(
    model: Model,
    transcoders: TraceTranscoders,
    tokens: np.ndarray,
    *,
    targets: list[int] | None = None,
    max_n_logits: int = 10,
    desired_logit_prob: float = 0.95,
    batch_size: int = 128,
    max_feature_nodes: int | None = None,
    update_interval: int = 4,
    prompt: str | None = None,
    progress: bool = False,
) -> Graph:
    """The unpruned attribution graph of `tokens` (pos,) int, BOS first. `targets`: the logit nodes' token
    ids (default: the salient logits). Rows go through the frozen model `batch_size` at a time (`progress`:
    with a progress bar). `max_feature_nodes`: at most this many feature nodes, the most influential as
    circuit-tracer estimates them, re-ranked every `update_interval` batches (None: every active feature)."""
    tokens = _check(model, transcoders, tokens, batch_size, max_feature_nodes, update_interval)
    run = record(model, tokens)
    codes, recon = encode_all(transcoders, run.mlp_in)
    codes = np.array(codes)
    codes[:, 0] = 0  # circuit-tracer drops position 0's features (the BOS)
    active = np.argwhere(codes != 0)  # (n, 3) (layer, position, feature), lexicographic
    acts = codes[tuple(active.T)].astype(np.float32)
    errors = (run.mlp_out - recon).at[:, 0].set(0.0)  # (L, pos, d)
    logit_ids, probs = _logit_targets(np.asarray(run.logits), targets, max_n_logits, desired_logit_prob)
    w_u = model.params.embed if model.params.unembed is None else model.params.unembed  # (vocab, d)
    w_u = np.asarray(w_u, np.float32)
    logit_vecs = w_u[logit_ids] - w_u.mean(0)

    n_layers, n_pos, n_feat = transcoders.n_layers, len(tokens), len(active)
    pos_pad, feat_pad = bucket(n_pos), bucket(n_feat)
    src = sources(decoder_pairs(transcoders, active, acts), errors, run.embed, pos_pad, feat_pad)
    rows = Rows(
        layer=np.concatenate([np.full(len(logit_ids), n_layers), active[:, 0]]),
        position=np.concatenate([np.full(len(logit_ids), n_pos - 1), active[:, 1]]),
        vector=np.concatenate([logit_vecs, encoder_vectors(transcoders, active[:, 0], active[:, 2])]),
    )
    logit_start = n_feat + (n_layers + 1) * n_pos
    cols = np.concatenate(
        [  # where each graph column sits in the padded rows the edge function returns
            np.arange(n_feat),
            feat_pad + (np.arange(n_layers)[:, None] * pos_pad + np.arange(n_pos)).reshape(-1),
            feat_pad + n_layers * pos_pad + np.arange(n_pos),
        ]
    )
    compute = _row_fn(model, transcoders, pad_frozen(run.frozen, pos_pad), src, rows, feat_pad, batch_size, cols)
    n_keep = n_feat if max_feature_nodes is None else min(max_feature_nodes, n_feat)
    with progress_bar("rows/s", progress) as bar:
        task = bar.add_task("attribution rows", total=len(logit_ids) + n_keep, info=f"{n_feat} active features")
        tick = lambda n: bar.update(task, advance=n)
        if n_keep == n_feat:
            adjacency, selected = _all_rows(compute, len(logit_ids), n_feat, logit_start, batch_size, tick), None
        else:
            rank = Ranking(probs, n_keep, batch_size, update_interval)
            adjacency, selected = _ranked_rows(compute, len(logit_ids), n_feat, logit_start, rank, tick)
            active, acts = active[selected], acts[selected]
    decode = lambda ids: model.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)
    decode = decode if model.tokenizer is not None else str
    return Graph(
        prompt=prompt if prompt is not None else (decode(tokens.tolist()) if model.tokenizer else ""),
        tokens=tokens,
        active_features=active.astype(np.int64),
        activations=acts,
        adjacency=adjacency,
        logit_targets=tuple(LogitTarget(decode([int(i)]), int(i)) for i in logit_ids),
        logit_probabilities=probs,
        n_layers=n_layers,
        model_name=model.cfg.name or model.source,
        scan=transcoders.scan,
        n_active=None if selected is None else n_feat,
    )


def salient_logits(logits: np.ndarray, max_n_logits: int, desired_logit_prob: float) -> np.ndarray:
    """The token ids circuit-tracer picks: the most probable `max_n_logits`, cut after the first whose
    cumulative probability reaches `desired_logit_prob`."""
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32)))
    top = np.argsort(-probs, kind="stable")[:max_n_logits]
    cut = int(np.searchsorted(np.cumsum(probs[top]), desired_logit_prob)) + 1
    return top[:cut]


def _logit_targets(logits: np.ndarray, targets, max_n: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    ids = salient_logits(logits, max_n, p) if targets is None else np.asarray(targets, np.int64)
    bad = ids[(ids < 0) | (ids >= len(logits))]
    if bad.size:
        raise ValueError(f"target token ids {bad.tolist()} are outside the vocabulary [0, {len(logits)})")
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32)))
    return ids, probs[ids].astype(np.float32)


class Ranking(NamedTuple):
    """circuit-tracer's `max_feature_nodes` rule: how many features, and how often they are re-ranked."""

    probs: np.ndarray  # (n_logits,) float32 logit probabilities, the influence's weights
    max_feature_nodes: int
    batch_size: int
    update_interval: int  # batches between re-rankings


def _row_fn(model: Model, transcoders, frozen, src, rows: Rows, n_feat: int, batch: int, cols: np.ndarray):
    """idx (<= batch,) -> (len(idx), graph columns) float32: the rows `idx` of `rows`, padded to one batch."""
    fn = edge_fn(model.cfg, n_feat)
    skip = skip_matrices(transcoders)
    params = jax.tree.map(lambda a: a.astype(jnp.float32), model.params)

    def compute(idx: np.ndarray) -> np.ndarray:
        b = Rows(*(pad_to(np.asarray(a)[idx], batch, 0) for a in rows))
        return np.asarray(fn(params, frozen, skip, src, b))[: len(idx), cols]

    return compute


def _all_rows(compute, n_logits: int, n_feat: int, logit_start: int, batch: int, tick) -> np.ndarray:
    """The dense adjacency with every active feature's row (rows: the logits, then features in order)."""
    adjacency = np.zeros((logit_start + n_logits,) * 2, np.float32)
    target = np.concatenate([logit_start + np.arange(n_logits), np.arange(n_feat)])  # node of each row
    for i in range(0, len(target), batch):
        idx = np.arange(i, min(i + batch, len(target)))
        adjacency[target[idx], :logit_start] = compute(idx)
        tick(len(idx))
    return adjacency


def _ranked_rows(compute, n_logits: int, n_feat: int, logit_start: int, r: Ranking, tick):
    """(the adjacency over the chosen features, their indices (sorted)): circuit-tracer's `max_feature_nodes`
    loop. The logit rows first; then, every `update_interval` batches, the unvisited features ranked by
    their influence through the rows so far (stable order on ties), and the next batches taken from the top."""
    n_rows = n_logits + r.max_feature_nodes
    edges = np.zeros((n_rows, logit_start), np.float32)  # rows in the order computed
    row_node = np.zeros(n_rows, np.int32)  # each row's node (logit node ids, then feature indices)
    for i in range(0, n_logits, r.batch_size):
        idx = np.arange(i, min(i + r.batch_size, n_logits))
        edges[idx], row_node[idx] = compute(idx), logit_start + idx
        tick(len(idx))
    visited, st = np.zeros(n_feat, bool), n_logits
    while st < n_rows:
        infl = np.asarray(partial_influences(edges, jnp.asarray(r.probs), row_node))[:n_feat]
        if np.isnan(infl).any():
            raise RuntimeError("the partial influences did not converge: the rows so far have a cycle")
        rank = np.argsort(-infl, kind="stable")
        pending = rank[~visited[rank]][: min(r.update_interval * r.batch_size, n_rows - st)]
        for j in range(0, len(pending), r.batch_size):
            f = pending[j : j + r.batch_size]
            edges[st : st + len(f)], row_node[st : st + len(f)] = compute(n_logits + f), f
            visited[f], st = True, st + len(f)
            tick(len(f))
    selected = np.flatnonzero(visited)
    keep = np.concatenate([selected, np.arange(n_feat, logit_start)])  # the kept columns
    order = n_logits + np.argsort(row_node[n_logits:], kind="stable")  # feature rows by feature index
    n = len(keep) + n_logits
    adjacency = np.zeros((n, n), np.float32)
    for i in range(0, r.max_feature_nodes, 1024):  # in blocks: no second full copy of the rows
        block = order[i : i + 1024]
        adjacency[i : i + len(block), : len(keep)] = edges[np.ix_(block, keep)]
    adjacency[len(keep) :, : len(keep)] = edges[np.ix_(np.arange(n_logits), keep)]
    return adjacency, selected


@functools.partial(jax.jit, static_argnames="max_iter")
def partial_influences(edges: jax.Array, probs: jax.Array, row_node: jax.Array, max_iter: int = 128) -> jax.Array:
    """circuit-tracer's `compute_partial_influences`: each node's influence on the logits through the rows
    computed so far, (rows' columns,) float32. `edges` (rows, nodes before the logits) in computed order,
    `row_node` each row's node (a logit's is its node id, past the columns); rows not yet computed are zero
    and add nothing. NaNs if the series has not ended after `max_iter` terms (a cycle)."""
    n_cols = edges.shape[1]
    a = jnp.abs(edges)
    a = a / jnp.maximum(a.sum(1, keepdims=True), 1e-8)
    start = jnp.concatenate([jnp.zeros(n_cols, jnp.float32), probs])  # (nodes,) the logits' weights

    def body(state):
        prod, total, i = state
        prod = jnp.concatenate([prod[row_node] @ a, jnp.zeros_like(probs)])
        return prod, total + prod, i + 1

    prod, total, _ = jax.lax.while_loop(
        lambda s: jnp.any(s[0] != 0) & (s[2] < max_iter), body, (start, jnp.zeros_like(start), 0)
    )
    return jnp.where(jnp.any(prod != 0), jnp.nan, total)[:n_cols]


def _check(model: Model, tc: TraceTranscoders, tokens, batch_size: int, max_nodes, interval: int) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.size < 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"tokens must be one prompt's token ids, (pos >= 2,) int with BOS first; got {tokens.shape} {tokens.dtype}"
        )
    if tc.n_layers != model.cfg.n_layers:
        raise ValueError(f"the transcoders replace {tc.n_layers} MLPs; the model has {model.cfg.n_layers} layers")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if (max_nodes is not None and max_nodes < 1) or interval < 1:
        raise ValueError(f"max_feature_nodes ({max_nodes}) and update_interval ({interval}) must be >= 1 (or None)")
    return tokens.astype(np.int64)
