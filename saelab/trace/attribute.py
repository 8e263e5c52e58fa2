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
   until that many are attributed; the graph keeps only those feature nodes. The rows are written to a
   (max_feature_nodes + logits, nodes) file as they come and read back in blocks (`saelab.trace.rows`).
5. The graph is held as its rows: the feature and logit nodes' rows against every node (error and token
   nodes have no inputs, so the square matrix adds only zero rows); `saelab.trace.prune` reads it so.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.model import Model
from saelab.runtime.progress import progress_bar
from saelab.trace.edges import Rows, bucket, edge_fn, pad_frozen, pad_to, sources
from saelab.trace.graph import Graph, LogitTarget
from saelab.trace.linearize import record
from saelab.trace.rows import Ranking, partial_influences, ranked_rows
from saelab.trace.transcoders import TraceTranscoders, decoder_pairs, encode_all, encoder_table, skip_matrices

__all__ = ["attribute", "partial_influences", "salient_logits"]


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
    """The unpruned attribution graph of `tokens` (pos,) int, BOS first, as its rows (`Graph.adjacency`:
    the feature and logit nodes' rows against every node). `targets`: the logit nodes' token ids (default:
    the salient logits). Rows go through the frozen model `batch_size` at a time (`progress`: with a
    progress bar). `max_feature_nodes`: at most this many feature nodes, the most influential as
    circuit-tracer estimates them, re-ranked every `update_interval` batches (None: every active feature)."""
    tokens = _check(model, transcoders, tokens, batch_size, max_feature_nodes, update_interval)
    run = record(model, tokens, compact=True)
    active, acts, errors = _features(transcoders, run)
    logit_ids, probs = _logit_targets(np.asarray(run.logits), targets, max_n_logits, desired_logit_prob)
    w_u = model.params.embed if model.params.unembed is None else model.params.unembed  # (vocab, d)
    w_u = np.asarray(w_u, np.float32)
    logit_vecs = w_u[logit_ids] - w_u.mean(0)
    del w_u

    n_layers, n_pos, n_feat, n_logits = transcoders.n_layers, len(tokens), len(active), len(logit_ids)
    pos_pad, feat_pad = bucket(n_pos), bucket(n_feat)
    src = sources(decoder_pairs(transcoders, active, acts), errors, run.embed, pos_pad, feat_pad)
    targets_ = Targets(
        layer=np.concatenate([np.full(n_logits, n_layers), active[:, 0]]),
        position=np.concatenate([np.full(n_logits, n_pos - 1), active[:, 1]]),
        feature=np.concatenate([np.zeros(n_logits, np.int64), active[:, 2]]),
        logit_vectors=logit_vecs,
        encoder=encoder_table(transcoders),
    )
    logit_start = n_feat + (n_layers + 1) * n_pos
    cols = np.concatenate(
        [  # where each graph column sits in the padded rows the edge function returns
            np.arange(n_feat),
            feat_pad + (np.arange(n_layers)[:, None] * pos_pad + np.arange(n_pos)).reshape(-1),
            feat_pad + n_layers * pos_pad + np.arange(n_pos),
        ]
    )
    compute = _row_fn(model, transcoders, pad_frozen(run.frozen, pos_pad), src, targets_, feat_pad, batch_size, cols)
    del run
    n_keep = n_feat if max_feature_nodes is None else min(max_feature_nodes, n_feat)
    with progress_bar("rows/s", progress) as bar:
        task = bar.add_task("attribution rows", total=n_logits + n_keep, info=f"{n_feat} active features")
        tick = lambda n: bar.update(task, advance=n)
        if n_keep == n_feat:
            adjacency, selected = _all_rows(compute, n_logits, n_feat, logit_start, batch_size, tick), None
        else:
            rank = Ranking(probs, n_keep, batch_size, update_interval)
            adjacency, selected = ranked_rows(compute, n_logits, n_feat, logit_start, rank, tick)
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


def _features(tc: TraceTranscoders, run) -> tuple[np.ndarray, np.ndarray, jax.Array]:
    """(active (n, 3) (layer, position, feature), lexicographic; their activations; the error nodes
    (L, pos, d), zero at position 0) of a clean run: position 0's features (the BOS) are dropped, as
    circuit-tracer does."""
    codes, recon = encode_all(tc, run.mlp_in)
    codes = np.asarray(codes)
    active = np.argwhere(codes[:, 1:] != 0) + np.array([0, 1, 0])  # (n, 3), lexicographic
    acts = codes[tuple(active.T)].astype(np.float32)
    return active, acts, (run.mlp_out - recon).at[:, 0].set(0.0)


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


class Targets(NamedTuple):
    """The rows' target nodes, logits first then features: where each reads its input and its direction
    (a logit's demeaned unembedding row, a feature's encoder column), gathered a batch at a time."""

    layer: np.ndarray  # (rows,) int: the layer whose MLP input the node reads; L for the final norm's output
    position: np.ndarray  # (rows,) int
    feature: np.ndarray  # (rows,) int: a feature row's feature index (0 for logits)
    logit_vectors: np.ndarray  # (n_logits, d_model)
    encoder: np.ndarray  # (L, d_model, d_sae) the transcoders' encoders

    def rows(self, idx: np.ndarray, batch: int) -> Rows:
        """The rows `idx`, padded to `batch`."""
        n_logits = len(self.logit_vectors)
        layer = self.layer[idx]
        logit = idx < n_logits
        vec = self.encoder[np.minimum(layer, len(self.encoder) - 1), :, self.feature[idx]]
        vec[logit] = self.logit_vectors[idx[logit]]
        return Rows(*(pad_to(a, batch, 0) for a in (layer, self.position[idx], vec)))


def _row_fn(model: Model, transcoders, frozen, src, targets: Targets, n_feat: int, batch: int, cols: np.ndarray):
    """idx (<= batch,) -> (len(idx), graph columns) float32: the rows `idx` of `targets`, padded to one batch."""
    fn = edge_fn(model.cfg, n_feat)
    skip = skip_matrices(transcoders)
    params = jax.tree.map(lambda a: a.astype(jnp.float32), model.params)

    def compute(idx: np.ndarray) -> np.ndarray:
        return np.asarray(fn(params, frozen, skip, src, targets.rows(np.asarray(idx), batch)))[: len(idx), cols]

    return compute


def _all_rows(compute, n_logits: int, n_feat: int, logit_start: int, batch: int, tick) -> np.ndarray:
    """Every active feature's row, then the logits', against every node (rows computed logits first)."""
    adjacency = np.zeros((n_feat + n_logits, logit_start + n_logits), np.float32)
    target = np.concatenate([n_feat + np.arange(n_logits), np.arange(n_feat)])  # the graph row of each
    for i in range(0, len(target), batch):
        idx = np.arange(i, min(i + batch, len(target)))
        adjacency[target[idx], :logit_start] = compute(idx)
        tick(len(idx))
    return adjacency


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
