"""The SAE-code method's pieces: node and edge scores on made-up codes, and the tiny SAE trainer."""

from __future__ import annotations

import itertools

import numpy as np

from saelab.circuits.codes import edge_node_scores, edge_scores, node_scores, scale_vectors, top_edges
from saelab.circuits.sae import codes, train_sae

# 3 positive and 2 negative prompts, 3 heads.
POS = np.array([[1, 7, 4], [2, 7, 4], [1, 8, 5]])
NEG = np.array([[1, 7, 4], [3, 7, 6]])


def test_node_score_by_hand() -> None:
    # head 0: P={1,2}, N={1,3} -> {2}; head 1: P={7,8}, N={7} -> {8}; head 2: P={4,5}, N={4,6} -> {5}
    assert node_scores(POS, NEG).tolist() == [1, 1, 1]
    assert node_scores(np.array([[0], [1], [2]]), np.array([[5]])).tolist() == [3]
    assert node_scores(np.array([[0], [0]]), np.array([[0]])).tolist() == [0]


def test_edge_scores_by_hand() -> None:
    e = edge_scores(POS, NEG)
    # heads (0, 1): P pairs {(1,7), (2,7), (1,8)}, N pairs {(1,7), (3,7)} -> 2
    # heads (0, 2): P {(1,4), (2,4), (1,5)}, N {(1,4), (3,6)} -> 2
    # heads (1, 2): P {(7,4), (8,5)}, N {(7,4), (7,6)} -> 1
    assert e.tolist() == [[1, 2, 2], [2, 1, 1], [2, 1, 1]]
    assert np.array_equal(np.diag(e), node_scores(POS, NEG))


def test_edge_scores_match_sets_on_random_codes() -> None:
    rng = np.random.default_rng(1)
    pos, neg = rng.integers(0, 3, (6, 5)), rng.integers(0, 3, (4, 5))
    e = edge_scores(pos, neg)
    for i, j in itertools.product(range(5), repeat=2):
        p = {(a, b) for a, b in zip(pos[:, i], pos[:, j], strict=True)}
        q = {(a, b) for a, b in zip(neg[:, i], neg[:, j], strict=True)}
        assert e[i, j] == len(p - q)


def test_edge_node_scores_skip_same_layer() -> None:
    e = np.arange(16).reshape(4, 4)
    e = e + e.T  # 2 layers x 2 heads
    v = edge_node_scores(e, n_heads=2)
    assert v.tolist() == [
        (e[0, 2] + e[0, 3]) / 2,
        (e[1, 2] + e[1, 3]) / 2,
        (e[2, 0] + e[2, 1]) / 2,
        (e[3, 0] + e[3, 1]) / 2,
    ]
    assert top_edges(e, 2, k=1) == [("0.1", "1.1", int(e[1, 3]))]


def test_tiny_sae_learns_and_codes_separate_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 3
    x = np.concatenate([c + 0.05 * rng.normal(size=(20, 16)) for c in centres]).astype(np.float32)
    x = scale_vectors(x[None], "mean-norm")[0]
    res = train_sae(x, latents=32, l1=0.01, epochs=300, lr=1e-2, seed=0)
    assert res.loss[-1] < 0.2 * res.loss[0]
    c = codes(res.sae, x).reshape(4, 20)
    assert all(len(set(row)) == 1 for row in c)  # one code per cluster
    assert res.mse < 0.1


def test_scaling_modes() -> None:
    x = np.random.default_rng(0).normal(size=(3, 4, 8))
    assert np.allclose(np.linalg.norm(scale_vectors(x, "mean-norm"), axis=-1).mean(), 1.0)
    assert np.allclose(np.linalg.norm(scale_vectors(x, "unit"), axis=-1), 1.0)
    assert np.allclose(scale_vectors(x, "center").mean(axis=0), 0.0)
