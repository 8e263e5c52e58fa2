"""Pruning and the graph's two scores, with circuit-tracer's definitions (0.5, `graph.py`: `prune_graph`,
`compute_graph_scores`; Ameisen et al. 2025, §5.2 and appendix on graph pruning).

Influence: with `A_n = |A|`, each row divided by its sum, a node's influence on the logits is
`w (A_n + A_n^2 + ...)`, w the logit probabilities on the logit nodes; the series ends because the graph has
no cycles. Pruning keeps the nodes holding `node_threshold` of the influence (and every token and logit),
then, on the graph of those nodes renormalised, the edges holding `edge_threshold` of the edge influence
`A_n[t, s] (w + I)[t]`, then drops, until nothing changes, feature and error nodes with no kept outgoing
edge and features with no kept incoming one.

Everything runs on the adjacency's rows as the graph holds them (`Graph.row_nodes`): the square matrix, or
only the features' and logits' rows (the error and token rows are zero, so they add nothing to a product,
a row sum or a threshold); the edge mask has the adjacency's shape.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.trace.graph import Graph

MAX_ITER = 1000  # circuit-tracer's bound on the influence series


class PruneResult(NamedTuple):
    """Which nodes and edges a pruned graph keeps, and each node's cumulative influence share."""

    node_mask: np.ndarray  # (n_nodes,) bool
    edge_mask: np.ndarray  # the adjacency's shape, bool, [target row, source]
    cumulative_scores: np.ndarray  # (n_nodes,) float32: share of influence held by nodes at least as influential


class GraphScores(NamedTuple):
    """How much of the computation the graph explains through features rather than errors."""

    replacement: float  # share of token-to-logit influence not through error nodes
    completeness: float  # influence-weighted share of nodes' inputs that are not errors


def normalize(a: jax.Array) -> jax.Array:
    """|A| with each row divided by its sum (clamped at 1e-10)."""
    a = jnp.abs(a)
    return a / jnp.maximum(a.sum(1, keepdims=True), 1e-10)


def influence(a_n: jax.Array, w: jax.Array, row_node: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(`w A_n + w A_n^2 + ...`, whether the series reached zero within MAX_ITER terms). `a_n` holds the rows
    of the nodes `row_node` (None: every node, square)."""
    take = (lambda v: v) if row_node is None else (lambda v: v[row_node])

    def body(state):
        cur, total, i = state
        cur = take(cur) @ a_n
        return cur, total + cur, i + 1

    first = take(w) @ a_n
    cur, total, i = jax.lax.while_loop(lambda s: jnp.any(s[0] != 0) & (s[2] < MAX_ITER), body, (first, first, 0))
    return total, ~jnp.any(cur != 0)


def prune(graph: Graph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> PruneResult:
    """circuit-tracer's `prune_graph` of `graph`. The two thresholds are found on the host among the nonzero
    scores (the zeros, most of the edge scores, add nothing to the cumulative share), with the cumulative sum
    accumulated in float64 as PyTorch does on the CPU; the rest is jitted."""
    for name, t in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {t}")
    node_fn, scores_fn, trim_fn = _prune_fns(graph.n_features, graph.n_pos, graph.n_logits)
    a, w, rows = jnp.asarray(graph.adjacency), jnp.asarray(graph.logit_weights()), jnp.asarray(graph.row_nodes())
    node_inf, cum, ok1 = node_fn(a, w, rows)
    inf = np.asarray(node_inf)
    node = inf >= find_threshold(inf, node_threshold)
    node[graph.token_start :] = True  # tokens and logits always stay
    scores, ok2 = scores_fn(a, w, jnp.asarray(node), rows)
    if not (bool(ok1) and bool(ok2)):
        raise RuntimeError(f"influence did not converge in {MAX_ITER} terms: the adjacency matrix has a cycle")
    scores = np.asarray(scores)
    edge = scores >= find_threshold(scores, edge_threshold)
    del scores
    node, edge = trim_fn(jnp.asarray(node), jnp.asarray(edge), rows)
    return PruneResult(np.asarray(node), np.asarray(edge), np.asarray(cum))


def find_threshold(scores: np.ndarray, threshold: float) -> float:
    """The score (of non-negative `scores`) at which the descending scores' cumulative share first reaches
    `threshold` (circuit-tracer's `find_threshold`), from the nonzero scores alone."""
    nonzero = scores[scores > 0]
    if not nonzero.size:
        return 0.0
    s = -np.sort(-nonzero.astype(np.float32))
    cum = np.cumsum(s, dtype=np.float64).astype(np.float32) / np.float32(np.sum(s, dtype=np.float64))
    i = int(np.searchsorted(cum, np.float32(threshold)))
    if i < s.size:
        return float(s[i])
    return 0.0 if s.size < scores.size else float(s[-1])  # past the nonzeros: a zero, or the last one


@functools.lru_cache(maxsize=8)
def _prune_fns(n_features: int, n_tokens: int, n_logits: int):
    """Jitted, each also given the adjacency rows' nodes: (adjacency, logit weights) -> (node influence,
    cumulative shares, converged); (adjacency, logit weights, node mask) -> (edge scores, converged); (node
    mask, edge mask) -> both after circuit-tracer's trimming."""
    keep_end = -(n_logits + n_tokens)  # features and errors come before tokens and logits

    def node_fn(a, w, rows):
        node_inf, ok = influence(normalize(a), w, rows)
        order = jnp.argsort(-node_inf, stable=True)
        cum = jnp.zeros_like(node_inf).at[order].set(jnp.cumsum(node_inf[order]) / jnp.sum(node_inf))
        return node_inf, cum, ok

    def scores_fn(a, w, node, rows):
        a_n = normalize(jnp.where(node[rows][:, None] & node[None, :], a, 0.0))
        pruned_inf, ok = influence(a_n, w, rows)
        return a_n * (pruned_inf + w)[rows][:, None], ok

    def trim(node, edge):  # feature/error nodes need a kept outgoing edge, features a kept incoming one
        node = node.at[:keep_end].set(node[:keep_end] & edge[:, :keep_end].any(0))
        return node.at[:n_features].set(node[:n_features] & edge[:n_features].any(1))

    def trim_fn(node, edge, rows):  # the features' rows come first in either layout
        def body(state):
            _, node, edge = state
            edge = edge & node[rows][:, None] & node[None, :]
            return node, trim(node, edge), edge

        _, node, edge = jax.lax.while_loop(lambda s: jnp.any(s[0] != s[1]), body, (node, trim(node, edge), edge))
        return node, edge

    return jax.jit(node_fn), jax.jit(scores_fn), jax.jit(trim_fn)


def graph_scores(graph: Graph) -> GraphScores:
    """circuit-tracer's `compute_graph_scores` of the unpruned graph."""
    rep, comp, ok = _scores_fn(graph.error_start, graph.token_start, graph.logit_start)(
        jnp.asarray(graph.adjacency), jnp.asarray(graph.logit_weights()), jnp.asarray(graph.row_nodes())
    )
    if not bool(ok):
        raise RuntimeError(f"influence did not converge in {MAX_ITER} terms: the adjacency matrix has a cycle")
    return GraphScores(float(rep), float(comp))


@functools.lru_cache(maxsize=8)
def _scores_fn(error_start: int, token_start: int, logit_start: int):
    def fn(a, w, rows):
        a_n = normalize(a)
        inf, ok = influence(a_n, w, rows)
        tokens, errors = inf[token_start:logit_start].sum(), inf[error_start:token_start].sum()
        non_error = jnp.ones_like(w).at[rows].set(1.0 - a_n[:, error_start:token_start].sum(-1))
        out = inf + w
        return tokens / (tokens + errors), (non_error * out).sum() / out.sum(), ok

    return jax.jit(fn)
