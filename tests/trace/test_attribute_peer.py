"""saelab's attribution graph equals circuit-tracer 0.5's on the same inputs: a tiny random Llama (2 blocks,
grouped-query attention, random norm weights) in saelab's JAX model and in circuit-tracer's TransformerLens
replacement model, random JumpReLU transcoders (a per-layer set with skip terms, and a CLT) exported with
saelab's circuit-tracer writer, the same 10 tokens. Compared: the active features (exactly) and their
activations, the logit targets, the adjacency matrix (float32; to 1e-5 of its largest magnitude), the pruned
node and edge masks (exactly), the cumulative influence scores and the replacement and completeness scores
(to 1e-5), and the frontend JSON (the same nodes and links, weights and influences to 1e-5 relative).
"plt-capped": circuit-tracer's `max_feature_nodes` rule with fewer nodes than active features (a small batch
and update interval, so the features are re-ranked several times): the chosen features are identical and
the adjacency, pruning and scores agree as above.
Fails, never skips, without circuit-tracer (tests/peer_modules.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saelab.trace import LogitTarget, attribute, transcoders
from saelab.trace.graph_json import graph_json
from saelab.trace.prune import graph_scores, prune
from tests.peer_modules import peer
from tests.trace import tiny

TOL = 1e-5
KINDS = ["plt", "clt", "plt-capped"]
CAP = dict(batch_size=8, update_interval=2)  # the capped run's batches: re-ranked every 16 rows


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """Per kind ("plt", "clt"): saelab's graph and circuit-tracer's, on the same model, transcoders, tokens."""
    peer("circuit_tracer")
    import torch
    from circuit_tracer.attribution.attribute import attribute as ct_attribute

    tmp = tmp_path_factory.mktemp("trace")
    model = tiny.tiny_llama(tmp)
    toks = tiny.tokens()
    plts, (clt, clt_cfg) = tiny.random_plts(), tiny.random_clt()
    out = {}
    plt_folder, clt_folder = tiny.save_plts(plts, tmp / "plt"), tiny.save_clt(clt, clt_cfg, tmp / "clt")
    ours_clt = transcoders.from_clt(clt, clt_cfg, scan="tiny/clt")
    with pytest.MonkeyPatch.context() as mp:
        for kind, folder, ours, opts in (
            ("plt", plt_folder, tiny.plt_transcoders(plts), dict(batch_size=64)),
            ("clt", clt_folder, ours_clt, dict(batch_size=64)),
            ("plt-capped", plt_folder, tiny.plt_transcoders(plts), dict(max_feature_nodes=40, **CAP)),
        ):
            tl = tiny.circuit_tracer_model(model, folder, mp)
            theirs = ct_attribute(torch.from_numpy(toks), tl, **opts)
            out[kind] = (attribute(model.model, ours, toks, **opts), theirs)
    return out


def _chosen(theirs) -> tuple[np.ndarray, np.ndarray]:
    """circuit-tracer's feature nodes: the selected ones of its active features, and their activations."""
    sel = theirs.selected_features.numpy()
    return theirs.active_features.numpy()[sel], theirs.activation_values.numpy()[sel]


@pytest.mark.parametrize("kind", KINDS)
def test_adjacency_equals_circuit_tracers(both, kind):
    ours, theirs = both[kind]
    assert ours.n_features >= 40  # enough features that every kind of edge occurs
    features, acts = _chosen(theirs)
    np.testing.assert_array_equal(ours.active_features, features)
    np.testing.assert_allclose(ours.activations, acts, rtol=TOL, atol=TOL)
    assert [t.vocab_idx for t in ours.logit_targets] == [t.vocab_idx for t in theirs.logit_targets]
    np.testing.assert_allclose(ours.logit_probabilities, theirs.logit_probabilities.numpy(), rtol=TOL)
    a = theirs.adjacency_matrix.numpy()
    assert ours.adjacency.shape == (ours.n_features + ours.n_logits, a.shape[1])  # held as its rows
    ours = ours.square()
    assert ours.adjacency.shape == a.shape
    np.testing.assert_allclose(ours.adjacency, a, rtol=0, atol=TOL * np.abs(a).max())
    block = lambda m, rows, cols: np.abs(m[rows, cols]).max()
    nf, tok = ours.n_features, ours.token_start
    for cols in (slice(0, nf), slice(nf, tok), slice(tok, ours.logit_start)):  # feature, error, token edges
        assert block(a, slice(0, nf), cols) > 0 and block(a, slice(ours.logit_start, None), cols) > 0


def test_capped_graph_keeps_fewer_features_than_are_active(both):
    ours, theirs = both["plt-capped"]
    n_active = len(theirs.active_features)
    assert ours.n_features == 40 < n_active == ours.n_active  # the cap bites: 40 of the active features
    assert ours.n_features > 2 * CAP["batch_size"] * CAP["update_interval"]  # ranked more than twice
    assert both["plt"][0].n_active is None and both["plt"][0].n_features == n_active
    full = both["plt"][0]  # the uncapped graph's features: the chosen ones are a strict subset
    assert {tuple(f) for f in ours.active_features} < {tuple(f) for f in full.active_features}


@pytest.mark.parametrize("kind", KINDS)
def test_pruning_and_scores_equal_circuit_tracers(both, kind):
    from circuit_tracer.graph import compute_graph_scores, prune_graph

    ours, theirs = both[kind]
    want = prune_graph(theirs)
    a = theirs.adjacency_matrix.numpy()
    theirs_rows = ours._replace(adjacency=a[ours.row_nodes()])  # their edges as the rows saelab holds
    for graph in (ours, ours.square(), theirs_rows, ours._replace(adjacency=a)):  # ours and theirs, both layouts
        got = prune(graph)
        np.testing.assert_array_equal(got.node_mask, want.node_mask.numpy())
        np.testing.assert_array_equal(_square_mask(graph, got.edge_mask), want.edge_mask.numpy())
        np.testing.assert_allclose(got.cumulative_scores, want.cumulative_scores.numpy(), rtol=TOL, atol=TOL)
        np.testing.assert_allclose(graph_scores(graph), compute_graph_scores(theirs), rtol=TOL)
    assert 0 < want.node_mask.sum() < ours.n_nodes and 0 < want.edge_mask.sum()
    assert not want.edge_mask.numpy()[np.setdiff1d(np.arange(ours.n_nodes), ours.row_nodes())].any()


def _square_mask(graph, mask: np.ndarray) -> np.ndarray:
    """An edge mask over the graph's adjacency rows as the (n_nodes, n_nodes) mask."""
    out = np.zeros((graph.n_nodes, graph.n_nodes), bool)
    out[graph.row_nodes()] = mask
    return out


def test_frontend_json_equals_circuit_tracers(both, tmp_path, monkeypatch):
    peer("circuit_tracer")
    import importlib

    cgf = importlib.import_module("circuit_tracer.utils.create_graph_files")  # the module, not its function

    ours, theirs = both["plt"]
    monkeypatch.setattr(
        cgf, "AutoTokenizer", type("T", (), {"from_pretrained": staticmethod(lambda _: tiny._Tokenizer())})
    )
    cgf.create_graph_files(theirs, "g", tmp_path, scan="tiny/plt")
    want = json.loads((tmp_path / "g.json").read_text())
    decode = tiny._Tokenizer().decode
    ours = ours._replace(  # the tiny model has no tokenizer: texts as circuit-tracer's stand-in writes them
        prompt=theirs.input_string,
        logit_targets=tuple(LogitTarget(decode(t.vocab_idx), t.vocab_idx) for t in ours.logit_targets),
    )
    got = json.loads(json.dumps(graph_json(ours, prune(ours), "g", decode)))
    assert got["metadata"] == want["metadata"] and got["qParams"] == want["qParams"]
    assert [n["node_id"] for n in got["nodes"]] == [n["node_id"] for n in want["nodes"]]
    for g, w in zip(got["nodes"], want["nodes"], strict=True):
        assert set(g) == set(w)
        for key in g:
            if isinstance(w[key], float):
                assert g[key] == pytest.approx(w[key], rel=TOL, abs=TOL), (g["node_id"], key)
            else:
                assert g[key] == w[key], (g["node_id"], key)
    assert [(x["source"], x["target"]) for x in got["links"]] == [(x["source"], x["target"]) for x in want["links"]]
    scale = max(abs(x["weight"]) for x in want["links"])
    for g, w in zip(got["links"], want["links"], strict=True):
        assert g["weight"] == pytest.approx(w["weight"], abs=TOL * scale)
