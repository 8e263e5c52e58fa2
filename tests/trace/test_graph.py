"""The graph container and the scores on a graph small enough to compute by hand: one layer, one position,
one feature (node 0), its error (1), the token (2) and one logit (3) of probability 1; the logit reads the
feature with weight 2 and the error with -1, the feature reads the error with 1 and the token with -3."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.trace import Graph, LogitTarget
from saelab.trace import graph as graphs
from saelab.trace.prune import graph_scores, prune


def _graph() -> Graph:
    a = np.zeros((4, 4), np.float32)
    a[3, 0], a[3, 1], a[0, 1], a[0, 2] = 2.0, -1.0, 1.0, -3.0
    return Graph(
        prompt="x", tokens=np.array([7]), active_features=np.array([[0, 0, 5]]),
        activations=np.array([1.5], np.float32), adjacency=a, logit_targets=(LogitTarget("y", 9),),
        logit_probabilities=np.array([1.0], np.float32), n_layers=1, model_name="m", scan="s",
    )  # fmt: skip


def test_scores_by_hand():
    """|A| row-normalised: logit row (2/3, 1/3, 0, 0), feature row (0, 1/4, 3/4, 0). Influence
    w A_n + w A_n^2 = (2/3, 1/3, 0, 0) + (0, 1/6, 1/2, 0) = (2/3, 1/2, 1/2, 0). Replacement: tokens 1/2 over
    tokens plus errors 1/2 + 1/2 = 0.5. Completeness: non-error shares (3/4, 1, 1, 2/3) weighted by influence
    plus w (2/3, 1/2, 1/2, 1): (1/2 + 1/2 + 1/2 + 2/3) / (8/3) = 13/16."""
    g = _graph()
    assert (g.error_start, g.token_start, g.logit_start, g.n_nodes) == (1, 2, 3, 4)
    scores = graph_scores(g)
    assert scores.replacement == pytest.approx(0.5, abs=1e-6)
    assert scores.completeness == pytest.approx(13 / 16, abs=1e-6)


def test_pruning_by_hand():
    """Node influence (2/3, 1/2, 1/2, 0) of total 5/3: the feature alone holds 0.4, with the error or the token
    0.7, all three 1.0, so at 0.8 every node stays (the threshold is the third-largest, 1/2); at 0.3 only the
    feature and the always-kept token and logit. Cumulative shares: feature 0.4, then 0.7 and 1.0 for the tied
    pair in index order, logit 1.0."""
    g = _graph()
    full = prune(g, node_threshold=0.8, edge_threshold=1.0)
    np.testing.assert_array_equal(full.node_mask, [True, True, True, True])
    np.testing.assert_allclose(full.cumulative_scores, [0.4, 0.7, 1.0, 1.0], atol=1e-6)
    small = prune(g, node_threshold=0.3, edge_threshold=1.0)
    np.testing.assert_array_equal(small.node_mask, [True, False, True, True])
    np.testing.assert_array_equal(small.edge_mask, (g.adjacency != 0) & np.array([True, False, True, True])[None])


def test_save_and_load_round_trip(tmp_path):
    g = _graph()
    back = graphs.load(graphs.save(g, tmp_path / "g.npz"))
    for name in g._fields:
        a, b = getattr(g, name), getattr(back, name)
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, name
