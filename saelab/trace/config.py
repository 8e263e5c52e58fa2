"""`saelab trace` settings: the prompt, the transcoders and model, the logit targets, pruning and output."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from saelab.runtime.config import Config


class TraceConfig(Config):
    """Validated settings of one attribution graph."""

    prompt: str
    """The prompt to trace (a BOS is put before it)."""
    transcoders: Path
    """A transcoder for every MLP: a multi-SAE run (e.g. experiments/transcoders.toml's checkpoints/transcoders-plt)
    or a circuit-tracer folder (a transcoder set or a CLT)."""
    model: str | None = None
    """Model alias, GGUF file, Hugging Face directory or hub id; default: the model the transcoders name, else
    smollm2-135m."""
    target: str | None = None
    """The logit node: a token's text (one token); default: circuit-tracer's salient logits."""
    out: Path = Path("results/trace")
    """Folder of the graph files ({slug}.json, graph-metadata.json, {slug}.summary.json, {slug}.graph.npz)."""
    slug: str | None = None
    """The graph's name in its files; default: from the prompt."""
    max_n_logits: int = Field(default=10, ge=1)
    """At most this many salient logits."""
    desired_logit_prob: float = Field(default=0.95, gt=0.0, le=1.0)
    """Salient logits are added until their probabilities sum to this."""
    node_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    """Pruning keeps the nodes that hold this share of the influence on the logits."""
    edge_threshold: float = Field(default=0.98, ge=0.0, le=1.0)
    """Pruning then keeps the edges that hold this share of the edge influence."""
    batch_size: int = Field(default=128, ge=1)
    """Rows (target nodes) per batched backward pass."""
    max_feature_nodes: int | None = Field(default=None, ge=1)
    """At most this many feature nodes: features are attributed in order of their estimated influence on the
    logits until this many are (circuit-tracer's `max_feature_nodes`; memory O(this x nodes)); default: all."""
    update_interval: int = Field(default=4, ge=1)
    """With --max-feature-nodes, re-rank the unvisited features every this many batches."""
    progress: bool = True
    """Show a progress bar over the attribution's rows."""
