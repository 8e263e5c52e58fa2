"""A pruned graph as the JSON circuit-tracer's frontend (and Neuronpedia) reads: circuit-tracer 0.5's
`utils/create_graph_files.py` and `frontend/graph_models.py`, schema version 1.

`{slug}.json` holds `metadata`, `qParams` (the view's state: nothing pinned or grouped), `nodes` and `links`
(`{source, target, weight}`: the raw adjacency weight of each kept edge). Nodes are those the pruning keeps
that have a kept edge, plus every token and logit. Node ids: a feature `{layer}_{feature}_{pos}`, an error
`0_{layer}_{pos}`, a token `E_{token id}_{pos}`, a logit `{n_layers + 1}_{token id}_{last pos}`; a node's
`influence` is its cumulative influence share (`saelab.trace.prune`). `graph-metadata.json` beside it lists
every graph of the folder (`{"graphs": [metadata, ...]}`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from saelab.trace.graph import Graph
from saelab.trace.prune import PruneResult

SCHEMA_VERSION = 1


def graph_json(
    graph: Graph, pruned: PruneResult, slug: str, decode: Callable[[int], str], node_threshold: float = 0.8
) -> dict[str, Any]:
    """The frontend's graph document; `decode` turns a token id into its text."""
    nodes = {int(i): _node(graph, int(i), pruned, decode) for i in np.flatnonzero(pruned.node_mask)}
    rows, srcs = np.nonzero(pruned.edge_mask)  # rows of the adjacency as the graph holds it
    dsts = graph.row_nodes()[rows]
    links = [
        {"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": float(graph.adjacency[r, s])}
        for r, t, s in zip(rows.tolist(), dsts.tolist(), srcs.tolist(), strict=True)
        if s in nodes and t in nodes
    ]
    linked = {x for link in links for x in (link["source"], link["target"])}
    used = [n for n in nodes.values() if n["node_id"] in linked or n["feature_type"] in ("embedding", "logit")]
    metadata = {
        "slug": slug,
        "scan": graph.scan,
        "transcoder_list": [],
        "prompt_tokens": [decode(int(t)) for t in graph.tokens],
        "prompt": graph.prompt,
        "node_threshold": node_threshold,
        "schema_version": SCHEMA_VERSION,
    }
    q = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    return {"metadata": metadata, "qParams": q, "nodes": used, "links": links}


def write_graph_files(doc: dict[str, Any], out: Path) -> Path:
    """Write `{slug}.json` into `out` and add its metadata to `out/graph-metadata.json` (replacing a graph of
    the same slug); returns the graph's path."""
    out.mkdir(parents=True, exist_ok=True)
    slug = doc["metadata"]["slug"]
    path = out / f"{slug}.json"
    path.write_text(json.dumps(doc, indent=2))
    index = out / "graph-metadata.json"
    graphs = json.loads(index.read_text())["graphs"] if index.exists() else []
    graphs = [g for g in graphs if g["slug"] != slug] + [doc["metadata"]]
    index.write_text(json.dumps({"graphs": graphs}, indent=2))
    return path


def cantor(x: int, y: int) -> int:
    """The Cantor pairing of two non-negative integers (a feature's `feature` number from layer and index)."""
    return (x + y) * (x + y + 1) // 2 + y


def _node(graph: Graph, i: int, pruned: PruneResult, decode: Callable[[int], str]) -> dict[str, Any]:
    influence = float(pruned.cumulative_scores[i])
    if i < graph.error_start:
        layer, pos, feat = (int(v) for v in graph.active_features[i])
        fields = dict(node_id=f"{layer}_{feat}_{pos}", feature=cantor(layer, feat), layer=str(layer), ctx_idx=pos)
        fields |= dict(feature_type="cross layer transcoder", jsNodeId=f"{layer}_{feat}-0")
        return _fill(fields, influence=influence, activation=float(graph.activations[i]))
    if i < graph.token_start:
        layer, pos = divmod(i - graph.error_start, graph.n_pos)
        fields = dict(node_id=f"0_{layer}_{pos}", feature=-1, layer=str(layer), ctx_idx=pos)
        fields |= dict(feature_type="mlp reconstruction error", jsNodeId=f"{layer}_{pos}-0")
        return _fill(fields, influence=influence)
    if i < graph.logit_start:
        pos = i - graph.token_start
        tok = int(graph.tokens[pos])
        fields = dict(node_id=f"E_{tok}_{pos}", feature=pos, layer="E", ctx_idx=pos, feature_type="embedding")
        return _fill(fields | dict(jsNodeId=f"E_{tok}-{pos}"), influence=influence)
    k = i - graph.logit_start
    target, prob = graph.logit_targets[k], float(graph.logit_probabilities[k])
    layer, pos = str(graph.n_layers + 1), graph.n_pos - 1
    fields = dict(node_id=f"{layer}_{target.vocab_idx}_{pos}", feature=target.vocab_idx, layer=layer, ctx_idx=pos)
    fields |= dict(
        feature_type="logit", token_prob=prob, is_target_logit=k == 0, jsNodeId=f"L_{target.vocab_idx}-{pos}"
    )
    return _fill(fields, clerp=f'Output "{target.token}" (p={prob:.3f})')


def _fill(fields: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A node with every field of the schema, in its order (defaults where the kind of node has none)."""
    base = {"token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0, "clerp": ""}
    node = base | {"influence": None, "activation": None} | fields | more
    order = ("node_id", "feature", "layer", "ctx_idx", "feature_type", "token_prob", "is_target_logit", "run_idx")
    order += ("reverse_ctx_idx", "jsNodeId", "clerp", "influence", "activation")
    return {k: node[k] for k in order}
