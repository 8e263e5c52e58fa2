"""`saelab trace qk GRAPH.npz --transcoders DIR`: which features set the attention of the heads that carry a
graph's strongest cross-position edges (saelab.trace.qk), as JSON. `qk_report` builds it; `register` adds
the subcommand."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from saelab.models import Model
from saelab.trace.graph import Graph
from saelab.trace.transcoders import TraceTranscoders


def qk_report(
    model: Model,
    tc: TraceTranscoders,
    graph: Graph,
    n_edges: int = 5,
    n_heads: int = 2,
    top: int = 10,
    by: Literal["weight", "influence"] = "influence",
) -> dict[str, Any]:
    """The `n_edges` strongest cross-position feature edges of `graph` (`by` |weight| or influence on the
    logits), each split over (layer, head,
    query position), and for each edge's `n_heads` largest splits the head's score at (query, key) split
    over the components at both ends: the `top` query components, key components and pairs."""
    from saelab.trace import qk

    if min(n_edges, n_heads, top) < 1:
        raise ValueError(f"--edges, --heads and --top must be >= 1; got {n_edges}, {n_heads}, {top}")
    t0 = time.perf_counter()
    state = qk.prepare(model, tc, graph)
    targets, sources = strongest_edges(graph, n_edges, by)
    split = qk.edge_heads(state, tc, graph, targets, sources)
    text = [_decode(model, int(t)) for t in graph.tokens]
    feats = graph.active_features
    describe = lambda i: {"layer": int(feats[i, 0]), "position": int(feats[i, 1]), "feature": int(feats[i, 2])}
    edges, wanted = [], {}
    for e in range(len(targets)):
        flat = np.abs(split.shares[e]).reshape(-1)
        best = np.argsort(-flat, kind="stable")[:n_heads]
        heads = []
        for l, h, q in zip(*np.unravel_index(best, split.shares[e].shape), strict=True):
            key = (int(l), int(h), int(q), int(feats[sources[e], 1]))
            wanted.setdefault(key, []).append(e)
            heads.append(
                {"layer": key[0], "head": key[1], "query_pos": key[2], "share": float(split.shares[e][l, h, q])}
            )
        edges.append(
            {"source": describe(sources[e]), "target": describe(targets[e]), "weight": float(split.weight[e]),
             "heads_sum": float(split.shares[e].sum()), "top_heads": heads}
        )  # fmt: skip
    out = [_head(state, key, es, text, top) for key, es in wanted.items()]
    return {
        "prompt": graph.prompt,
        "tokens": text,
        "model": graph.model_name,
        "transcoders": graph.scan,
        "ranked_by": by,
        "edges": edges,
        "heads": out,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def strongest_edges(
    graph: Graph, n: int, by: Literal["weight", "influence"] = "weight", chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(targets, sources): the n feature-to-feature edges whose source sits at an earlier position than its
    target, strongest first: by |weight|, or by influence on the logits (pruning's edge score,
    `|A[t, s]| / sum_s' |A[t, s']| * (w + I)[t]`, I the target's influence). Scanned `chunk` rows at a time."""
    pos = graph.active_features[:, 1]
    row = _row_factors(graph, by, chunk)
    best_w, best_t, best_s = np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    for start in range(0, graph.n_features, chunk):
        stop = min(start + chunk, graph.n_features)
        a = np.abs(graph.adjacency[start:stop, : graph.n_features]) * row[start:stop, None]
        a = np.where(pos[None, :] < pos[start:stop, None], a, 0.0).reshape(-1)
        top = np.argpartition(-a, min(n, a.size - 1))[:n]
        best_w = np.concatenate([best_w, a[top]])
        best_t = np.concatenate([best_t, start + top // graph.n_features])
        best_s = np.concatenate([best_s, top % graph.n_features])
    keep = np.argsort(-best_w, kind="stable")[:n]
    keep = keep[best_w[keep] > 0]
    return best_t[keep], best_s[keep]


def _row_factors(graph: Graph, by: str, chunk: int) -> np.ndarray:
    """(adjacency rows,) what each target row's |weights| are multiplied by to rank edges: 1, or (w + I) / row sum
    with I = w A_n + w A_n^2 + ... (A_n = |A| row-normalised) summed on the host a block of rows at a time."""
    if by == "weight":
        return np.ones(graph.n_nodes, np.float32)
    if by != "influence":
        raise ValueError(f"rank edges by 'weight' or 'influence', not {by!r}")
    a, nodes = graph.adjacency, graph.row_nodes()  # the rows as the graph holds them (features first)
    blocks = range(0, len(a), chunk)
    rowsum = np.concatenate([np.abs(a[i : i + chunk]).sum(1) for i in blocks])
    rowsum = np.maximum(rowsum, 1e-10)
    w = graph.logit_weights().astype(np.float64)
    cur, total = w, np.zeros_like(w)
    for _ in range(graph.n_nodes):  # the graph is acyclic: at most its depth of steps before cur is zero
        cur = sum((cur[nodes[i : i + chunk]] / rowsum[i : i + chunk]) @ np.abs(a[i : i + chunk]) for i in blocks)
        if not np.any(cur):
            break
        total += cur
    return ((w + total)[nodes] / rowsum).astype(np.float32)


def _head(state, key: tuple[int, int, int, int], edges: list[int], text: list[str], top: int) -> dict[str, Any]:
    """One head's score at (query, key), its components ranked."""
    import jax.numpy as jnp

    from saelab.trace import qk

    l, h, q, s = key
    hs = qk.head_scores(state, l, h, q, s)
    qv, kv = hs.query_vectors, hs.key_vectors
    by_query = hs.scale * qv @ kv.sum(0)  # each query component against the whole key
    by_key = hs.scale * kv @ qv.sum(0)
    vals, i, j = qk.top_pairs(jnp.asarray(qv), jnp.asarray(kv), hs.scale, k=top)
    name = lambda c: _component(state, c, text)
    ranked = lambda v: [name(int(c)) | {"contribution": float(v[c])} for c in np.argsort(-np.abs(v))[:top]]
    return {
        "layer": l, "head": h, "query_pos": q, "key_pos": s, "query_token": text[q], "key_token": text[s],
        "score": hs.score, "pattern": float(state.frozen.pattern[l, h, q, s]), "edges": edges,
        "constants": {  # the three constant rows against the whole other side, and against each other
            name(c)["kind"]: {"query": float(by_query[c]), "key": float(by_key[c])} for c in range(len(qv) - 3, len(qv))
        } | {"between": float(hs.scale * qv[-3:].sum(0) @ kv[-3:].sum(0))},
        "top_query": ranked(by_query), "top_key": ranked(by_key),
        "top_pairs": [
            {"query": name(int(a)), "key": name(int(b)), "contribution": float(v)}
            for v, a, b in zip(np.asarray(vals), np.asarray(i), np.asarray(j), strict=True)
        ],
    }  # fmt: skip


def _component(state, c: int, text: list[str]) -> dict[str, Any]:
    """What component row c of `qk.head_scores` is: a feature, an error node, a token or a constant."""
    n_feat, (n_layers, n_pos) = len(state.active), state.errors.shape[:2]
    if c < n_feat:
        l, p, f = (int(x) for x in state.active[c])
        return {"kind": "feature", "layer": l, "position": p, "feature": f, "activation": float(state.activations[c])}
    c -= n_feat
    if c < n_layers * n_pos:
        return {"kind": "error", "layer": c // n_pos, "position": c % n_pos}
    c -= n_layers * n_pos
    if c < n_pos:
        return {"kind": "token", "position": c, "token": text[c]}
    return {"kind": ("decoder_bias", "bos", "bias")[c - n_pos]}


def _decode(model: Model, i: int) -> str:
    return model.tokenizer.decode([i], skip_special_tokens=False) if model.tokenizer is not None else str(i)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `trace qk` (wired as `saelab trace qk` through saelab.cli's SUBCOMMANDS)."""
    p = sub.add_parser(
        "trace qk",
        help="attention (QK) attribution for the heads on a graph's strongest cross-position edges",
        description="Splits the strongest cross-position feature edges of a graph that `saelab trace` saved "
        "(SLUG.graph.npz) over the attention heads that carry them, and each top head's pre-softmax score "
        "over the features, error nodes and tokens at its query and key positions (docs/trace.md).",
    )
    p.add_argument("graph", type=Path, help="the unpruned graph `saelab trace --out DIR` wrote (DIR/SLUG.graph.npz)")
    p.add_argument("--transcoders", required=True, help="the transcoders the graph was traced with")
    p.add_argument("--model", help="model (default: the one the transcoders name, else smollm2-135m)")
    p.add_argument("--edges", type=int, default=5, help="how many of the strongest cross-position edges")
    p.add_argument("--heads", type=int, default=2, help="how many (layer, head, query) splits per edge to explain")
    p.add_argument(
        "--by",
        choices=("influence", "weight"),
        default="influence",
        help="rank edges by their influence on the logits (pruning's edge score) or by |weight|",
    )
    p.add_argument("--top", type=int, default=10, help="how many components and pairs to list per head")
    p.add_argument("--out", type=Path, help="the JSON file (default: next to the graph, SLUG.qk.json)")
    p.set_defaults(fn=_qk)


def _qk(a: argparse.Namespace) -> None:
    from saelab.models.aliases import LOCAL_ALIASES
    from saelab.trace import graph as graphs
    from saelab.trace import transcoders as tt

    if not a.graph.is_file():
        raise ValueError(f"no graph file {a.graph}: run `saelab trace PROMPT --out DIR` and pass DIR/SLUG.graph.npz")
    tc = tt.load(a.transcoders)
    local = {hf.lower(): alias for alias, hf in LOCAL_ALIASES.items()}
    model = Model.load(a.model or local.get((tc.model_name or "").lower(), tc.model_name) or "smollm2-135m")
    report = qk_report(model, tc, graphs.load(a.graph), a.edges, a.heads, a.top, a.by)
    out = a.out or a.graph.with_name(a.graph.name.removesuffix(".graph.npz") + ".qk.json")
    out.write_text(json.dumps(report, indent=1))
    for hd in report["heads"]:
        best = hd["top_pairs"][0]
        print(
            f"L{hd['layer']}.H{hd['head']} {hd['query_pos']}:{hd['query_token']!r} -> {hd['key_pos']}:"
            f"{hd['key_token']!r} score {hd['score']:.2f} (p {hd['pattern']:.3f}); top pair {best['contribution']:.2f}"
        )
    print(f"{len(report['edges'])} edges, {len(report['heads'])} heads in {report['seconds']:.1f} s: {out}")
