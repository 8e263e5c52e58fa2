"""Attribution graphs through a replacement model, as circuit-tracer defines them (Ameisen et al. 2025,
"Circuit Tracing"), in JAX: `attribute` builds a prompt's graph, `prune` and `graph_scores` read it,
`write_graph_files` writes it for circuit-tracer's frontend. docs/trace.md says what each computes."""

from saelab.trace.attribute import attribute, salient_logits
from saelab.trace.graph import Graph, LogitTarget
from saelab.trace.transcoders import TraceTranscoders

__all__ = ["Graph", "LogitTarget", "TraceTranscoders", "attribute", "salient_logits"]
