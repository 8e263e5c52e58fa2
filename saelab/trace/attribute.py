"""`attribute`: one prompt's attribution graph through the local replacement model (circuit-tracer 0.5's
`attribute` with every active feature kept, `max_feature_nodes=None`).

1. One clean forward (`saelab.trace.linearize.record`) freezes the attention patterns and norm scales and
   gives each layer's MLP input and output.
2. The transcoders encode the MLP inputs: the active features (position 0, the BOS, zeroed as circuit-tracer
   does), and each layer's error node `mlp_out - reconstruction` (zero at position 0).
3. Logit targets: the top `max_n_logits` tokens at the last position until their probability sums to
   `desired_logit_prob` (circuit-tracer's salient logits), or the tokens asked for; each reads the
   unembedding row minus the vocabulary's mean row.
4. Rows, logits first then features, in batches through `saelab.trace.edges`.
"""

from __future__ import annotations

from collections.abc import Iterator

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
    prompt: str | None = None,
    progress: bool = False,
) -> Graph:
    """The unpruned attribution graph of `tokens` (pos,) int, BOS first. `targets`: the logit nodes' token
    ids (default: the salient logits). Rows go through the frozen model `batch_size` at a time (`progress`:
    with a progress bar)."""
    tokens = _check(model, transcoders, tokens, batch_size)
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
    adjacency = np.zeros((logit_start + len(logit_ids),) * 2, np.float32)
    # row i of the attribution is node target[i]: the logits first, then the features
    target = np.concatenate([logit_start + np.arange(len(logit_ids)), np.arange(n_feat)])
    cols = np.concatenate(
        [  # where each graph column sits in the padded rows the edge function returns
            np.arange(n_feat),
            feat_pad + (np.arange(n_layers)[:, None] * pos_pad + np.arange(n_pos)).reshape(-1),
            feat_pad + n_layers * pos_pad + np.arange(n_pos),
        ]
    )
    frozen = pad_frozen(run.frozen, pos_pad)
    for start, block in _edge_rows(model, transcoders, frozen, src, rows, feat_pad, batch_size, progress):
        adjacency[target[start : start + len(block)], :logit_start] = block[:, cols]
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


def _edge_rows(
    model: Model, transcoders, frozen, src, rows: Rows, n_feat: int, batch: int, progress: bool
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, the rows' padded edges), `batch` rows at a time (the last batch padded with zero rows)."""
    fn = edge_fn(model.cfg, n_feat)
    skip = skip_matrices(transcoders)
    params = jax.tree.map(lambda a: a.astype(jnp.float32), model.params)
    n = len(rows.layer)
    with progress_bar("rows/s", progress) as bar:
        task = bar.add_task("attribution rows", total=n, info=f"{n_feat} feature columns")
        for i in range(0, n, batch):
            b = Rows(*(pad_to(np.asarray(a[i : i + batch]), batch, 0) for a in rows))
            yield i, np.asarray(fn(params, frozen, skip, src, b))[: n - i]
            bar.update(task, completed=min(i + batch, n))


def _check(model: Model, tc: TraceTranscoders, tokens, batch_size: int) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.size < 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"tokens must be one prompt's token ids, (pos >= 2,) int with BOS first; got {tokens.shape} {tokens.dtype}"
        )
    if tc.n_layers != model.cfg.n_layers:
        raise ValueError(f"the transcoders replace {tc.n_layers} MLPs; the model has {model.cfg.n_layers} layers")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return tokens.astype(np.int64)
