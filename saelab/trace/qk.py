"""Attention (QK) attribution on an attribution graph's strongest cross-position edges (issue 34, item 6).

An edge from a feature at key position s to a feature at query position t > s crosses positions, so every
path it sums over leaves s through some attention head. `edge_heads` splits the edge exactly by the first
hop out of s: layer l, head h and query position q get

    c[l, h, q] = A_l[h, q, s] * (OV_h of the source's vector carried to layer l at s) . g_l[q]

where the source's vector is carried up position s alone (residual, skip, the head's attention to its own
position) and g_l[q] is the target's input direction pulled back to layer l's attention output at q through
the frozen model; the c add up to the graph's edge weight. Its largest (l, h, q) is the head carrying the
edge, usually with q = t.

`head_scores` explains that head's pre-softmax score at (q, s): the score is bilinear in the residual
streams at the two positions, q = R_q(N1(r_q) W_Q + b_Q), k = R_s(N1(r_s) W_K + b_K) with the norm scales
frozen and R the rotary rotation at each position, and each stream is linear in the graph's nodes through
the frozen model (features, error nodes, token embeddings, at any earlier position). So
score = scale * sum_ij Q_i . K_j over the nodes i, j and three constant components on each side, what no
node writes, carried the same way: the transcoders' decoder biases (`decoder_bias`), position 0's MLP
outputs (`bos`: its features are no nodes, as in circuit-tracer) and the rest (`bias`: b_Q / b_K, attention
and norm biases; zero for Llama-family models). Pre-norm blocks without q/k norms or soft-capping.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.models.layers import apply_rope, norm, rope_inv_freq
from saelab.models.model import Model
from saelab.models.weights import ModelWeights, Norm
from saelab.trace.edges import Sources, sources
from saelab.trace.graph import Graph
from saelab.trace.heads import edge_shares, frozen_stream
from saelab.trace.linearize import Frozen, check_model, frozen_norm, record
from saelab.trace.transcoders import TraceTranscoders, decoder_pairs, encode_all, skip_matrices


class State(NamedTuple):
    """One prompt's frozen replacement model and what its nodes write (positions unpadded)."""

    params: ModelWeights  # float32
    frozen: Frozen
    skip: jax.Array | None  # (L, d, d) transcoder skips
    src: Sources  # the features' decoder vectors x activations, by (layer, position, slot)
    errors: jax.Array  # (L, pos, d) error nodes (zero at position 0)
    silent: jax.Array  # (L, pos, d) what no node writes at the MLP outputs: b_dec, and position 0's whole output
    embed: jax.Array  # (pos, d) token nodes
    resid_pre: jax.Array  # (L, pos, d) the clean residual stream entering each layer
    active: np.ndarray  # (n, 3) every active feature (layer, position, index): the graph's, or more when the
    # graph kept only the most influential; the QK components' feature rows, in this order
    activations: np.ndarray  # (n,)
    cfg: ModelConfig | None  # the model's config (None inside jitted functions, where it is static)
    n_features: int | None  # the graph's active features (None inside jitted functions)


class EdgeHeads(NamedTuple):
    """The edges' split over the first attention hop out of the source's position."""

    target: np.ndarray  # (E,) graph node of each edge's target feature
    source: np.ndarray  # (E,) its source feature
    weight: np.ndarray  # (E,) the graph's edge weight A[target, source]
    shares: np.ndarray  # (E, L, n_heads, pos) c[l, h, q]; sums over the last three axes to `weight`


class HeadScore(NamedTuple):
    """One head's pre-softmax score at (query, key) split over pairs of components."""

    layer: int
    head: int
    query: int
    key: int
    score: float  # the scaled score, as hook_attn_scores holds it
    query_vectors: np.ndarray  # (n_comp, d_head) each component's rotated query part; the last row is bias
    key_vectors: np.ndarray  # (n_comp, d_head) the same for the key
    scale: float  # the scores' factor, d_head ** -0.5 (or Gemma's query_pre_attn_scalar)


def prepare(model: Model, transcoders: TraceTranscoders, graph: Graph) -> State:
    """The frozen model of `graph`'s prompt and its nodes' writes (one clean forward, one encode)."""
    _check(model, transcoders, graph)
    run = record(model, graph.tokens)
    codes, recon = encode_all(transcoders, run.mlp_in)
    codes = np.array(codes)
    codes[:, 0] = 0  # position 0's features are no nodes (circuit-tracer's rule, as in attribute)
    active = np.argwhere(codes != 0)  # (n, 3) every active feature, the graph's and any it left out
    acts = codes[tuple(active.T)].astype(np.float32)
    if graph.n_active is None and not np.array_equal(active, graph.active_features):
        raise ValueError(
            "the graph's features are not these transcoders' on its tokens: pass the model and "
            "transcoders the graph was traced with"
        )
    errors = (run.mlp_out - recon).at[:, 0].set(0.0)
    skip = skip_matrices(transcoders)
    bos = run.mlp_out[:, 0] - (0.0 if skip is None else jnp.einsum("ld,lde->le", run.mlp_in[:, 0], skip))
    b_dec = jnp.stack([q.b_dec for q in transcoders.replacement.params]) if not transcoders.is_clt else None
    b_dec = transcoders.replacement.params.b_dec if b_dec is None else b_dec  # (L, d)
    silent = jnp.broadcast_to(b_dec[:, None], errors.shape).at[:, 0].set(bos).astype(jnp.float32)
    src = sources(decoder_pairs(transcoders, active, acts), errors, run.embed, graph.n_pos, len(active))
    names = [f"blocks.{l}.hook_resid_pre" for l in range(graph.n_layers)]
    ids = np.asarray(graph.tokens, np.int32)[None]
    _, cache = model.run_with_cache(ids, names, pad_mask=np.ones_like(ids))
    resid = jnp.stack([cache[n][0] for n in names]).astype(jnp.float32)
    params = jax.tree.map(lambda a: a.astype(jnp.float32), model.params)
    return State(
        params,
        run.frozen,
        skip,
        src,
        errors,
        silent,
        run.embed,
        resid,
        active,
        acts,
        model.cfg,
        len(active),
    )


def edge_heads(state: State, transcoders: TraceTranscoders, graph: Graph, targets, sources_) -> EdgeHeads:
    """Split each edge (target, source feature nodes, source earlier) over (layer, head, query position)."""
    targets, sources_ = np.asarray(targets, np.int64), np.asarray(sources_, np.int64)
    if np.any(np.concatenate([targets, sources_]) >= graph.n_features) or np.any(targets < 0) or np.any(sources_ < 0):
        raise ValueError(f"edge_heads takes feature nodes, indices in [0, {graph.n_features}) of the graph")
    return EdgeHeads(*edge_shares(state, transcoders, graph, targets, sources_))


def head_scores(state: State, layer: int, head: int, query: int, key: int) -> HeadScore:
    """The score of `head` at layer `layer` from position `query` to `key` as components: rows in graph
    order (`state.active`'s features, error nodes layer-major, tokens), then three constant rows: the
    transcoders' decoder biases, position 0's MLP outputs, and the rest (b_Q / b_K, attention and norm
    biases; zero for Llama-family models)."""
    if not 0 <= key <= query < state.embed.shape[0]:
        raise ValueError(f"need 0 <= key <= query < {state.embed.shape[0]}; got key {key}, query {query}")
    cfg = state.cfg
    if not (0 <= layer < cfg.n_layers and 0 <= head < cfg.n_heads):
        raise ValueError(f"layer {layer} / head {head} outside the model's {cfg.n_layers} x {cfg.n_heads} heads")
    qv, kv = _components(_arrays(state), layer, head, query, key, cfg=cfg, n_feat=state.n_features)
    scale = (cfg.query_pre_attn_scalar or cfg.d_head) ** -0.5
    score = float(scale * jnp.sum(qv.sum(0) * kv.sum(0)))
    return HeadScore(layer, head, query, key, score, np.asarray(qv), np.asarray(kv), scale)


@functools.partial(jax.jit, static_argnames=("k", "chunk"))
def top_pairs(qv: jax.Array, kv: jax.Array, scale: float, k: int, chunk: int = 256):
    """The k pairs (i, j) of largest |scale * qv_i . kv_j|: (values, i, j), scanned `chunk` rows at a time
    (the full pair matrix is never held)."""
    n, nk = qv.shape[0], kv.shape[0]
    n_chunks = -(-n // chunk)
    padded = jnp.pad(qv, ((0, n_chunks * chunk - n), (0, 0))).reshape(n_chunks, chunk, -1)
    kk = min(k, chunk * nk)

    def one(block):  # (chunk, d_head)
        m = (scale * block @ kv.T).reshape(-1)  # (chunk * nk,)
        _, i = jax.lax.top_k(jnp.abs(m), kk)
        return m[i], i

    vals, idx = jax.lax.map(one, padded)  # (n_chunks, kk)
    rows = jnp.arange(n_chunks)[:, None] * chunk + idx // nk
    _, best = jax.lax.top_k(jnp.abs(vals).reshape(-1), min(k, n_chunks * kk))
    return vals.reshape(-1)[best], rows.reshape(-1)[best], (idx % nk).reshape(-1)[best]


def linear_stream(state: State, embed, writes, taps):
    """The frozen model from the embeddings (pos, d), the layers' MLP-output additions (L, pos, d) and
    additions at each layer's attention output (L, pos, d): (the stream entering each layer, each layer's
    MLP input), both (L, pos, d). Biases, constants, are left out."""
    ins, xs = frozen_stream(state.params, state.cfg, state.frozen, state.skip, embed, writes, taps)
    return ins, xs[:-1]


@functools.partial(jax.jit, static_argnames=("cfg", "n_feat"))
def _components(state: State, l, h, t, s, *, cfg: ModelConfig, n_feat: int):
    """(query rows, key rows), each (n_feat + L * pos + pos + 3, d_head): node parts, then the constants."""
    layers, f = state.params.layers, state.frozen
    n_pos, d = state.embed.shape
    stack = lambda get: jnp.stack([get(p) for p in layers])
    w_q, w_k, w_ln = stack(lambda p: p.attn.W_Q), stack(lambda p: p.attn.W_K), stack(lambda p: p.ln1.w)
    kvh = h // (cfg.n_heads // cfg.n_kv_heads)
    inv = rope_inv_freq(cfg)

    def rot(y, pos):  # (d_head,) rotated to position pos
        return y if cfg.positions != "rope" else apply_rope(y[None, None, None], jnp.reshape(pos, (1, 1)), inv)[0, 0, 0]

    def read(resid_l, w, head, pos):  # the frozen-normalised stream at pos into one head, rotated: (d_head,)
        n = frozen_norm(resid_l[pos][None], f.ln1[l, pos][None], Norm(w_ln[l]), cfg)[0]
        return rot(n @ w[l][:, head], pos)

    def lin(embed, writes):  # (2 d_head,): the query's then the key's node-linear part
        ins = frozen_stream(state.params, cfg, f, state.skip, embed, writes, jnp.zeros((len(layers), n_pos, d)))[0][l]
        return jnp.concatenate([read(ins, w_q, h, t), read(ins, w_k, kvh, s)])

    # the writes as a list of layers: the transpose of indexing one array would pad every layer's cotangent
    j_e, j_w = jax.jacrev(lin, argnums=(0, 1))(state.embed, list(state.errors))
    j_w = jnp.stack(j_w, 1)  # (2dh, L, pos, d); j_e (2dh, pos, d)
    per_pair = jnp.einsum("jlpd,lpkd->lpkj", j_w, state.src.pair_vectors).reshape(-1, j_w.shape[0])
    feats = jnp.zeros((n_feat, j_w.shape[0])).at[state.src.pair_feature.reshape(-1)].add(per_pair, mode="drop")
    errs = jnp.einsum("jlpd,lpd->lpj", j_w, state.errors).reshape(-1, j_w.shape[0])
    toks = jnp.einsum("jpd,pd->pj", j_e, state.embed)
    nodes = jnp.concatenate([feats, errs, toks])  # (n_nodes, 2dh)
    bias = lambda get, i: 0.0 if get(layers[0]) is None else stack(get)[l, i]
    clean = lambda w, b, i, pos: rot(norm(state.resid_pre[l, pos], Norm(w_ln[l], ln_b), cfg) @ w[l][:, i] + b, pos)
    ln_b = None if layers[0].ln1.b is None else stack(lambda p: p.ln1.b)[l]
    clean = jnp.concatenate(
        [clean(w_q, bias(lambda p: p.attn.b_Q, h), h, t), clean(w_k, bias(lambda p: p.attn.b_K, kvh), kvh, s)]
    )
    const = jnp.einsum("jlpd,lpd->pj", j_w, state.silent)  # (pos, 2dh): position 0's outputs, then b_dec's
    const = jnp.stack([const[1:].sum(0), const[0]])  # the decoder biases, position 0's MLP outputs
    parts = jnp.concatenate([nodes, const])
    rows = jnp.concatenate([parts, (clean - parts.sum(0))[None]])
    return rows[:, : cfg.d_head], rows[:, cfg.d_head :]


def _arrays(state: State) -> State:
    """The state's arrays alone, for a jitted function (its config passed as a static argument)."""
    return state._replace(active=None, activations=None, cfg=None, n_features=None)


def _check(model: Model, tc: TraceTranscoders, graph: Graph) -> None:
    cfg = model.cfg
    check_model(cfg)
    if cfg.attn_logit_softcap is not None or cfg.rope_local_theta is not None:
        raise ValueError(
            f"QK attribution takes plain softmax attention with one rotary base; {cfg.name} has "
            "soft-capped scores or per-layer rotary bases (Gemma)"
        )
    if any(p.attn.q_norm is not None for p in model.params.layers):
        raise ValueError(
            f"{cfg.name} normalises queries and keys per head (q/k norm): QK attribution covers "
            "models without it (Llama, SmolLM2, Qwen2, GPT-2)"
        )
    if tc.n_layers != graph.n_layers or cfg.n_layers != graph.n_layers:
        raise ValueError(
            f"the graph has {graph.n_layers} layers, the transcoders {tc.n_layers}, the model "
            f"{cfg.n_layers}: trace the graph with this model and these transcoders"
        )
