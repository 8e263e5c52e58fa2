"""Attribution graphs through a replacement model, as circuit-tracer defines them (Ameisen et al. 2025,
"Circuit Tracing"), in JAX: `attribute` builds a prompt's graph, `prune` and `graph_scores` read it,
`graph_json` and `write_graph_files` write it for circuit-tracer's frontend; `intervene` and `generate`
(saelab.trace.intervene) edit the replacement model. docs/trace.md says what each computes."""

from saelab.trace.attribute import attribute, salient_logits
from saelab.trace.graph import Graph, LogitTarget
from saelab.trace.graph_json import graph_json, write_graph_files
from saelab.trace.prune import GraphScores, PruneResult, graph_scores, prune
from saelab.trace.transcoders import TraceTranscoders

__all__ = [
    "Graph",
    "GraphScores",
    "LogitTarget",
    "PruneResult",
    "TraceTranscoders",
    "attribute",
    "graph_json",
    "graph_scores",
    "prune",
    "salient_logits",
    "write_graph_files",
]
