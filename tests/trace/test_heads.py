"""The heads that carry an attribution graph's edges, on a tiny random Llama (2 blocks, grouped-query
attention, rotary) with random JumpReLU transcoders (a per-layer set with skips, and a CLT). circuit-tracer
has no head split, so the oracle is the graph itself: every cross-position edge, whatever its kinds of node
(feature, error or token source; feature or logit target), splits into per-(layer, head, query) shares that
add up to its weight (1e-5 of the largest edge), and the split computed per distinct node equals the
per-edge one of `qk.edge_heads`."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.trace import heads, qk_cli
from saelab.trace.prune import prune


def _edges_of_kind(graph, rng, n: int = 6):
    """Up to n cross-position edges of each (source kind, target kind) pair with a nonzero weight."""
    sq = graph.square().adjacency
    pos = heads.node_positions(graph)
    kinds = {
        "feature": np.arange(graph.n_features),
        "error": np.arange(graph.error_start, graph.token_start),
        "token": np.arange(graph.token_start, graph.logit_start),
    }
    out = {}
    for t_kind, t_nodes in (
        ("feature", np.arange(graph.n_features)),
        ("logit", np.arange(graph.logit_start, graph.n_nodes)),
    ):
        for s_kind, s_nodes in kinds.items():
            t, s = np.meshgrid(t_nodes, s_nodes, indexing="ij")
            ok = (pos[s] < pos[t]) & (sq[t, s] != 0)
            pick = np.flatnonzero(ok.reshape(-1))
            pick = rng.choice(pick, min(n, len(pick)), replace=False)
            out[(s_kind, t_kind)] = (t.reshape(-1)[pick], s.reshape(-1)[pick])
    return out


def test_every_kind_of_edge_splits_into_its_weight(traced):
    tc, graph, st = traced
    edges = _edges_of_kind(graph, np.random.default_rng(0))
    assert sum(len(t) for t, _ in edges.values()) >= 20 and len(edges[("token", "logit")][0]) > 0
    big = np.abs(graph.adjacency).max()
    for kind, (t, s) in edges.items():
        if len(t) == 0:
            continue
        es = heads.edge_shares(st, tc, graph, t, s)
        np.testing.assert_allclose(es.weight, graph.square().adjacency[t, s], err_msg=str(kind))
        np.testing.assert_allclose(es.shares.sum((1, 2, 3)), es.weight, atol=1e-5 * big, err_msg=str(kind))
        pos = heads.node_positions(graph)
        assert np.all(es.shares[np.arange(len(s)), :, :, pos[s]] == 0)  # nothing hops to its own position


def test_shares_per_distinct_node_equal_the_per_edge_split(traced):
    """Edges sharing targets and sources (8 strongest feature edges, all pairs) give the same shares as each
    edge split on its own (1e-6 of the largest share)."""
    tc, graph, st = traced
    t, s = qk_cli.strongest_edges(graph, 8)
    both = heads.edge_shares(st, tc, graph, t, s).shares
    alone = np.stack([heads.edge_shares(st, tc, graph, t[i : i + 1], s[i : i + 1]).shares[0] for i in range(len(t))])
    np.testing.assert_allclose(both, alone, atol=1e-6 * np.abs(alone).max())


def test_head_ranking_spreads_the_edge_scores(traced):
    """The ranking adds up to the used edges' pruning scores; restricted to the pruned graph's kept edges it
    uses only those; every head score is non-negative."""
    tc, graph, st = traced
    t, s, score = heads.strongest_crossing(graph, 40)
    assert np.all(np.diff(score) <= 0) and len(t) == 40
    pos = heads.node_positions(graph)
    assert np.all(pos[s] < pos[t])
    ranking = heads.head_ranking(st, tc, graph, max_edges=40)
    assert ranking.shape == (st.cfg.n_layers, st.cfg.n_heads) and np.all(ranking >= 0)
    np.testing.assert_allclose(ranking.sum(), score.sum(), rtol=1e-5)
    kept = prune(graph).edge_mask
    tk, sk, _ = heads.strongest_crossing(graph, 10_000, kept)
    rows = np.full(graph.n_nodes, -1)
    rows[graph.row_nodes()] = np.arange(len(graph.row_nodes()))
    assert len(tk) > 0 and np.all(kept[rows[tk], sk])


def test_bad_edges_are_named(traced):
    tc, graph, st = traced
    t, s = qk_cli.strongest_edges(graph, 1)
    with pytest.raises(ValueError, match="cross-position"):
        heads.edge_shares(st, tc, graph, s, t)
    with pytest.raises(ValueError, match="targets are feature or logit"):
        heads.edge_shares(st, tc, graph, [graph.token_start], s)
    with pytest.raises(ValueError, match="sources are feature, error or token"):
        heads.edge_shares(st, tc, graph, t, [graph.logit_start])
