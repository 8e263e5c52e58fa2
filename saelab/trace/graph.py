"""`Graph`: one prompt's attribution graph, in circuit-tracer's node order (circuit-tracer 0.5, `graph.py`).

Nodes, in adjacency order: the active transcoder features (layer, position, feature; lexicographic), one
error node per (layer, position), layer-major, one token node per position, then the logit targets. The
adjacency matrix is `A[target, source]`: the direct, linear effect of the source node on the target through
the local replacement model (frozen attention patterns and norm scales, `saelab.trace.linearize`). Rows of
error and token nodes are zero (nothing is attributed to them); logit rows hold their direct inputs. A graph
holds either the square matrix or, as `saelab.trace.attribute` writes it, only its nonzero kinds of rows:
the features' then the logits' (`row_nodes` says which node each row is; `square` gives the square matrix).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

ARRAYS = ("tokens", "active_features", "activations", "adjacency", "logit_probabilities")


class LogitTarget(NamedTuple):
    """A logit node: the token's text and vocabulary id (circuit-tracer's `LogitTarget`)."""

    token: str
    vocab_idx: int


class Graph(NamedTuple):
    """One prompt's unpruned attribution graph. Arrays are numpy, float32 adjacency. The feature nodes
    (`active_features`, `activations`) are the features the graph holds: every active one, or the
    `max_feature_nodes` chosen by influence (`n_active` then says how many were active)."""

    prompt: str  # the prompt's text (token strings joined)
    tokens: np.ndarray  # (n_pos,) int token ids, BOS first
    active_features: np.ndarray  # (n_features, 3) int: (layer, position, feature index)
    activations: np.ndarray  # (n_features,) float32: each active feature's activation
    adjacency: np.ndarray  # (n_nodes or n_features + n_logits, n_nodes) float32: A[target, source] (see row_nodes)
    logit_targets: tuple[LogitTarget, ...]  # the logit nodes, in order (the first is the graph's target)
    logit_probabilities: np.ndarray  # (n_logits,) float32: softmax probabilities at the last position
    n_layers: int
    model_name: str  # the model the graph was traced on
    scan: str  # the transcoders' identifier (circuit-tracer's `scan`)
    n_active: int | None = None  # features active in the prompt when the graph keeps only the most influential
    # (`attribute(..., max_feature_nodes=...)`, circuit-tracer's `selected_features`); None: it keeps them all

    @property
    def n_pos(self) -> int:
        return int(len(self.tokens))

    @property
    def n_features(self) -> int:
        return int(len(self.active_features))

    @property
    def n_logits(self) -> int:
        return len(self.logit_targets)

    @property
    def error_start(self) -> int:
        """First error node: error (layer l, position c) is node `error_start + l * n_pos + c`."""
        return self.n_features

    @property
    def token_start(self) -> int:
        """First token node: token c is node `token_start + c`."""
        return self.n_features + self.n_layers * self.n_pos

    @property
    def logit_start(self) -> int:
        """First logit node."""
        return self.token_start + self.n_pos

    @property
    def n_nodes(self) -> int:
        return self.logit_start + self.n_logits

    def row_nodes(self) -> np.ndarray:
        """(adjacency rows,) int: the node of each row of `adjacency`: every node in order when it is square,
        else the features then the logits."""
        if self.adjacency.shape[0] == self.n_nodes:
            return np.arange(self.n_nodes)
        if self.adjacency.shape[0] != self.n_features + self.n_logits:
            raise ValueError(
                f"adjacency has {self.adjacency.shape[0]} rows: want {self.n_nodes} (every node) or "
                f"{self.n_features + self.n_logits} (features and logits)"
            )
        return np.concatenate([np.arange(self.n_features), self.logit_start + np.arange(self.n_logits)])

    def square(self) -> Graph:
        """This graph with the square (n_nodes, n_nodes) adjacency (zero rows for error and token nodes)."""
        if self.adjacency.shape[0] == self.n_nodes:
            return self
        a = np.zeros((self.n_nodes, self.n_nodes), np.float32)
        a[self.row_nodes()] = self.adjacency
        return self._replace(adjacency=a)

    def logit_weights(self) -> np.ndarray:
        """(n_nodes,) float32: each logit node's probability, zero elsewhere (what influence is measured on)."""
        w = np.zeros(self.n_nodes, np.float32)
        w[self.logit_start :] = self.logit_probabilities
        return w


def save(graph: Graph, path: str | Path) -> Path:
    """Write the graph to one `.npz` file (arrays as they are, the rest as JSON), for later analyses."""
    path = Path(path)
    meta = {k: getattr(graph, k) for k in ("prompt", "n_layers", "model_name", "scan", "n_active")}
    meta["logit_targets"] = [list(t) for t in graph.logit_targets]
    arrays = {k: getattr(graph, k) for k in ARRAYS}
    np.savez_compressed(path, meta=np.asarray(json.dumps(meta)), **arrays)
    return path


def load(path: str | Path) -> Graph:
    """A graph written by `save`."""
    with np.load(path) as f:
        meta = json.loads(str(f["meta"]))
        arrays = {k: f[k] for k in ARRAYS}
    targets = tuple(LogitTarget(str(t), int(i)) for t, i in meta.pop("logit_targets"))
    return Graph(**meta, **arrays, logit_targets=targets)
