"""Which attention heads carry an attribution graph's edges (issue 34, item 5): the OV path of each head.

An edge from a node at position s to a node at a later position t crosses positions, so every path it sums
over leaves s through some attention head. `edge_shares` splits the edge exactly by that first hop out of s:
layer l, head h and query position q get

    c[l, h, q] = A_l[h, q, s] * (OV_h of the source's vector carried to layer l at s) . g_l[q]

where the source's vector is carried up position s alone (residual, skip, each head's attention to its own
position) and g_l[q] is the target's input direction pulled back to layer l's attention output at q through
the frozen model; the c add up to the graph's edge weight. Sources are feature, error and token nodes,
targets feature and logit nodes. The pull-back depends only on the target and the carried vector only on the
source, so each is computed once per distinct node and the edges combine them.

`head_ranking` turns one graph into a score per head: each kept cross-position edge's pruning score (its
share of the influence on the logits, circuit-tracer's edge score) spread over the heads in proportion to
|sum over q of c[l, h, q]|. Averaged over a task's prompts, that ranks the heads the task's feature circuits
run through, to be scored against exact patching like the other head rankings of `saelab.circuits`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.trace.graph import Graph
from saelab.trace.linearize import Frozen, frozen_norm
from saelab.trace.prune import influence, normalize
from saelab.trace.transcoders import TraceTranscoders, decoder_pairs, encoder_vectors

EDGE_CHUNK = 256  # edges combined per jitted call: (chunk, L, heads, pos) floats at a time


class EdgeShares(NamedTuple):
    """Edges split over the first attention hop out of the source's position."""

    target: np.ndarray  # (E,) graph node of each edge's target (a feature or a logit)
    source: np.ndarray  # (E,) its source (a feature, an error or a token node)
    weight: np.ndarray  # (E,) the graph's edge weight A[target, source]
    shares: np.ndarray  # (E, L, n_heads, pos) c[l, h, q]; sums over the last three axes to `weight`


def node_positions(graph: Graph) -> np.ndarray:
    """(n_nodes,) int: each node's position (a logit's is the last)."""
    n_pos, n_layers = graph.n_pos, graph.n_layers
    return np.concatenate(
        [
            graph.active_features[:, 1],
            np.tile(np.arange(n_pos), n_layers),
            np.arange(n_pos),
            np.full(graph.n_logits, n_pos - 1),
        ]
    ).astype(np.int64)


def edge_shares(state, transcoders: TraceTranscoders, graph: Graph, targets, sources) -> EdgeShares:
    """Split each edge (target: a feature or logit node; source: a feature, error or token node at an earlier
    position) over (layer, head, query position). `state` is `saelab.trace.qk.prepare`'s."""
    targets, sources = np.asarray(targets, np.int64), np.asarray(sources, np.int64)
    _check_edges(graph, targets, sources)
    pos = node_positions(graph)
    t_nodes, t_of = np.unique(targets, return_inverse=True)
    s_nodes, s_of = np.unique(sources, return_inverse=True)
    t_layer, t_vec = _reads(state, transcoders, graph, t_nodes)
    embeds, writes = _writes(state, transcoders, graph, s_nodes)
    arrays = state._replace(active=None, activations=None, cfg=None, n_features=None)
    cfg = state.cfg
    pulled = _pull(arrays, jnp.asarray(t_layer), jnp.asarray(pos[t_nodes]), jnp.asarray(t_vec), cfg=cfg)
    moved = _moved(arrays, jnp.asarray(embeds), jnp.asarray(writes), jnp.asarray(pos[s_nodes]), cfg=cfg)
    out = []
    for i in range(0, len(targets), EDGE_CHUNK):
        part = slice(i, i + EDGE_CHUNK)
        t_i, s_i = _pad(t_of[part]), _pad(s_of[part])
        c = _combine(arrays.frozen, pulled, moved, jnp.asarray(t_i), jnp.asarray(s_i), jnp.asarray(pos[s_nodes][s_i]))
        out.append(np.asarray(c)[: len(t_of[part])])
    shares = np.concatenate(out) if out else np.zeros((0, cfg.n_layers, cfg.n_heads, graph.n_pos), np.float32)
    rows = np.full(graph.n_nodes, -1)
    rows[graph.row_nodes()] = np.arange(len(graph.row_nodes()))
    return EdgeShares(targets, sources, graph.adjacency[rows[targets], sources], shares)


def head_ranking(state, transcoders: TraceTranscoders, graph: Graph, kept=None, max_edges: int = 2048) -> np.ndarray:
    """(L, n_heads) float: the graph's cross-position edges' pruning scores spread over the heads that carry
    them, summing to the scores' total over the edges used (the `max_edges` highest-scoring cross-position
    edges, among the edges `kept` (a bool mask shaped like the adjacency, e.g. `prune`'s) when given)."""
    return head_flow(state, transcoders, graph, kept, max_edges).sum((2, 3))


def head_flow(state, transcoders: TraceTranscoders, graph: Graph, kept=None, max_edges: int = 2048) -> np.ndarray:
    """(L, n_heads, query, key) float: `head_ranking` before its sum over positions: each edge's score goes
    to the heads in proportion to |sum over q of c[l, h, q]|, within a head to the query positions in
    proportion to |c[l, h, q]|, and to the key position of the edge's source."""
    t, s, score = strongest_crossing(graph, max_edges, kept)
    cfg = state.cfg
    if len(t) == 0:
        return np.zeros((cfg.n_layers, cfg.n_heads, graph.n_pos, graph.n_pos))
    shares = edge_shares(state, transcoders, graph, t, s).shares  # (E, L, heads, q)
    per_head = np.abs(shares.sum(-1))
    per_head /= np.maximum(per_head.sum((1, 2), keepdims=True), 1e-30)
    per_query = np.abs(shares) / np.maximum(np.abs(shares).sum(-1, keepdims=True), 1e-30)
    key = np.eye(graph.n_pos, dtype=np.float32)[node_positions(graph)[s]]  # (E, key)
    return np.einsum("e,elh,elhq,es->lhqs", score, per_head, per_query, key, optimize=True)


def strongest_crossing(graph: Graph, n: int, kept=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(targets, sources, scores) of the `n` cross-position edges with the largest pruning edge score
    `|A|_n[t, s] (w + influence)[t]` (circuit-tracer's), largest first; only among `kept` when given."""
    sq = graph.square()
    a_n = normalize(jnp.asarray(sq.adjacency))
    w = jnp.asarray(sq.logit_weights())
    score = np.asarray(a_n * (w + influence(a_n, w)[0])[:, None])
    pos = node_positions(graph)
    crossing = pos[None, :] < pos[:, None]
    if kept is not None:
        mask = np.zeros_like(crossing)
        mask[graph.row_nodes()] = np.asarray(kept, bool)
        crossing &= mask
    score = np.where(crossing, score, 0.0)
    flat = np.argsort(-score, axis=None, kind="stable")[:n]
    t, s = np.unravel_index(flat, score.shape)
    keep = score[t, s] > 0
    return t[keep], s[keep], score[t, s][keep]


def _check_edges(graph: Graph, targets: np.ndarray, sources: np.ndarray) -> None:
    if targets.shape != sources.shape or targets.ndim != 1:
        raise ValueError(f"targets {targets.shape} and sources {sources.shape} must be one index per edge")
    is_target = (targets < graph.n_features) | (targets >= graph.logit_start)
    if np.any(targets < 0) or np.any(targets >= graph.n_nodes) or not np.all(is_target):
        raise ValueError(
            f"edge targets are feature or logit nodes: [0, {graph.n_features}) "
            f"or [{graph.logit_start}, {graph.n_nodes})"
        )
    if np.any(sources < 0) or np.any(sources >= graph.logit_start):
        raise ValueError(f"edge sources are feature, error or token nodes: [0, {graph.logit_start})")
    pos = node_positions(graph)
    if np.any(pos[sources] >= pos[targets]):
        raise ValueError("edge_shares takes cross-position edges only: each source before its target")


def _reads(state, tc: TraceTranscoders, graph: Graph, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(layer (T,), vector (T, d)): where each target reads its input (L: the final norm's output) and along
    which direction (a feature's encoder column, a logit's demeaned unembedding row)."""
    feat = nodes < graph.n_features
    layer = np.full(len(nodes), graph.n_layers)
    d = state.embed.shape[-1]
    vec = np.zeros((len(nodes), d), np.float32)
    af = graph.active_features[nodes[feat]]
    layer[feat] = af[:, 0]
    if feat.any():
        vec[feat] = encoder_vectors(tc, af[:, 0], af[:, 2])
    if (~feat).any():
        p = state.params
        w_u = np.asarray(p.embed if p.unembed is None else p.unembed, np.float32)  # (vocab, d)
        ids = np.array([graph.logit_targets[i - graph.logit_start].vocab_idx for i in nodes[~feat]])
        vec[~feat] = w_u[ids] - w_u.mean(0)
    return layer, vec


def _writes(state, tc: TraceTranscoders, graph: Graph, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(embeds (S, d), writes (S, L, d)): what each source node puts into the stream at its position: a token
    its embedding, an error node its vector at its layer's MLP output, a feature its decoder vectors."""
    n_layers, d = graph.n_layers, state.embed.shape[-1]
    embeds = np.zeros((len(nodes), d), np.float32)
    writes = np.zeros((len(nodes), n_layers, d), np.float32)
    feat = np.flatnonzero(nodes < graph.n_features)
    if len(feat):
        pairs = decoder_pairs(tc, graph.active_features[nodes[feat]], graph.activations[nodes[feat]])
        np.add.at(writes, (feat[pairs.feature], pairs.layer), pairs.vectors)
    err = np.flatnonzero((nodes >= graph.error_start) & (nodes < graph.token_start))
    if len(err):
        layer, pos = np.divmod(nodes[err] - graph.error_start, graph.n_pos)
        writes[err, layer] = np.asarray(state.errors)[layer, pos]
    tok = np.flatnonzero(nodes >= graph.token_start)
    if len(tok):
        embeds[tok] = np.asarray(state.embed)[nodes[tok] - graph.token_start]
    return embeds, writes


def _pad(idx: np.ndarray) -> np.ndarray:
    """Indices padded (with 0) to a multiple of EDGE_CHUNK, so every chunk compiles once."""
    return np.pad(idx, (0, -len(idx) % EDGE_CHUNK))


def frozen_stream(params, cfg: ModelConfig, frozen: Frozen, skip, embed, writes, taps):
    """The frozen model (whole attention patterns) from the embeddings (pos, d), the MLP-output additions
    (L, pos, d) and additions at each attention output (L, pos, d): (the stream entering each layer
    (L, pos, d), the inputs nodes read: each layer's MLP input and, last, the final norm's output
    (L + 1, pos, d)). Biases, constants, are left out."""
    resid, ins, xs = embed, [], []
    for l, p in enumerate(params.layers):
        ins.append(resid)
        v = head_values(p, cfg, frozen.ln1[l], resid)
        z = jnp.einsum("hqk,khd->qhd", frozen.pattern[l], v)
        mid = resid + jnp.einsum("qhd,hdm->qm", z, p.attn.W_O) + taps[l]
        x = frozen_norm(mid, frozen.ln2[l], p.ln2, cfg)
        xs.append(x)
        resid = mid + (0.0 if skip is None else x @ skip[l]) + writes[l]
    xs.append(frozen_norm(resid, frozen.ln_final, params.ln_final, cfg))
    return jnp.stack(ins), jnp.stack(xs)


def head_values(p, cfg: ModelConfig, ln1: jax.Array, resid: jax.Array) -> jax.Array:
    """Each query head's value vectors (pos, heads, d_head) of the frozen-normalised stream."""
    v = jnp.einsum("pm,mkd->pkd", frozen_norm(resid, ln1, p.ln1, cfg), p.attn.W_V)
    return jnp.repeat(v, cfg.n_heads // cfg.n_kv_heads, axis=1)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _pull(state, layer, position, vector, *, cfg: ModelConfig):
    """(T, L, pos, d): each target's input direction pulled back to every layer's attention output."""
    n_pos, d = state.embed.shape
    n_layers = len(state.params.layers)
    zeros = jnp.zeros((n_layers, n_pos, d), jnp.float32)
    fixed = (state.params, cfg, state.frozen, state.skip)
    # taps as a list of layers: the transpose of indexing one array would pad every layer's cotangent
    pull = jax.vjp(lambda taps: frozen_stream(*fixed, zeros[0], zeros, taps)[1], list(zeros))[1]
    one = lambda tl, tp, tv: jnp.stack(pull(jnp.zeros((n_layers + 1, n_pos, d)).at[tl, tp].set(tv))[0])
    return jax.lax.map(lambda a: one(*a), (layer, position, vector))


@functools.partial(jax.jit, static_argnames=("cfg",))
def _moved(state, embeds, writes, position, *, cfg: ModelConfig):
    """(S, L, heads, d): what each head at each layer moves out of each source's position (its OV output
    from the source's vector carried up that position alone)."""
    f, layers = state.frozen, state.params.layers
    n_layers, d = len(layers), state.embed.shape[-1]

    def one(e, w, s):  # carried up position s: each head attends only to its own position
        diag = Frozen(f.pattern[:, :, s, s][..., None, None], f.ln1[:, s, None], f.ln2[:, s, None], f.ln_final[s, None])
        taps = jnp.zeros((n_layers, 1, d))
        carried = frozen_stream(state.params, cfg, diag, state.skip, e[None], w[:, None], taps)[0][:, 0]  # (L, d)
        out = lambda l, p: jnp.einsum(
            "hd,hdm->hm", head_values(p, cfg, f.ln1[l, s, None], carried[l, None])[0], p.attn.W_O
        )
        return jnp.stack([out(l, p) for l, p in enumerate(layers)])

    return jax.lax.map(lambda a: one(*a), (embeds, writes, position))


@jax.jit
def _combine(frozen: Frozen, pulled, moved, t_idx, s_idx, s_pos):
    """(chunk, L, heads, pos) c[l, h, q] of the edges (target t_idx, source s_idx at position s_pos)."""

    def one(t, s, sp):
        c = frozen.pattern[:, :, :, sp] * jnp.einsum("lhd,lqd->lhq", moved[s], pulled[t])
        return jnp.where(jnp.arange(c.shape[-1]) == sp, 0.0, c)  # the hop to its own position stays at s

    return jax.vmap(one)(t_idx, s_idx, s_pos)
