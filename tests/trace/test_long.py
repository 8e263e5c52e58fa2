"""Long prompts: circuit-tracer's `max_feature_nodes` rule. `partial_influences` equals circuit-tracer's
`compute_partial_influences` on the same rows (float32, to 1e-5 relative), from an array and from the rows'
file read back a row at a time; `saelab trace --max-feature-nodes N` keeps N feature nodes and says how many
were active; bad settings are refused by name.
Fails, never skips, without circuit-tracer (tests/peer_modules.py)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.cli import main
from saelab.trace import rows
from saelab.trace.attribute import attribute, partial_influences
from tests.peer_modules import peer
from tests.trace import tiny


def test_partial_influences_equal_circuit_tracers():
    peer("circuit_tracer")
    import torch
    from circuit_tracer.graph import compute_partial_influences

    r = np.random.default_rng(0)
    n_feat, n_other, n_logits, n_rows = 30, 12, 3, 20  # 17 feature rows computed, 3 buffer rows still empty
    n_cols = n_feat + n_other
    row_node = np.concatenate([n_cols + np.arange(n_logits), r.permutation(n_feat)[: n_rows - n_logits - 3], [0] * 3])
    edges = r.normal(size=(n_rows, n_cols)).astype(np.float32)
    edges[-3:] = 0.0
    # acyclic: a feature row only reads features of higher index, as a layer reads the layers below it
    feat_rows = np.arange(n_logits, n_rows - 3)
    edges[feat_rows, :n_feat] *= np.arange(n_feat)[None] > row_node[feat_rows, None]
    probs = np.array([0.5, 0.3, 0.1], np.float32)
    got = np.asarray(partial_influences(jnp.asarray(edges), jnp.asarray(probs), jnp.asarray(row_node, jnp.int32)))
    full = np.concatenate([edges, np.zeros((n_rows, n_logits), np.float32)], 1)  # its rows span every node
    want = compute_partial_influences(
        torch.from_numpy(full), torch.from_numpy(probs), torch.from_numpy(row_node), device="cpu"
    ).numpy()
    assert np.abs(want[:n_feat]).max() > 0
    np.testing.assert_allclose(got, want[:n_cols], rtol=1e-5, atol=1e-7)


def test_trace_max_feature_nodes_keeps_that_many(tmp_path, capsys):
    t = tiny.tiny_llama(tmp_path)
    folder = tiny.save_plts(tiny.random_plts(), tmp_path / "plt")
    out = tmp_path / "graphs"
    argv = ["trace", "w5 w9 w13 w17 w21", "--transcoders", str(folder), "--model", str(t.path), "--out", str(out)]
    assert main([*argv, "--max-feature-nodes", "12", "--batch-size", "4", "--slug", "g", "--no-progress"]) == 0
    summary = json.loads((out / "g.summary.json").read_text())
    assert summary["n_features"] == 12 < summary["n_active"]
    assert summary["n_nodes"] == 12 + (tiny.N_LAYERS + 1) * 6 + len(summary["logits"])
    assert "(the 12 most influential kept)" in capsys.readouterr().out
    nodes = json.loads((out / "g.json").read_text())["nodes"]
    assert 0 < len([n for n in nodes if n["feature_type"] == "cross layer transcoder"]) <= 12


def test_bad_max_feature_nodes_is_refused(tmp_path):
    t = tiny.tiny_llama(tmp_path)
    tc = tiny.plt_transcoders(tiny.random_plts())
    with pytest.raises(ValueError, match="max_feature_nodes"):
        attribute(t.model, tc, tiny.tokens(), max_feature_nodes=0)
    with pytest.raises(ValueError, match="update_interval"):
        attribute(t.model, tc, tiny.tokens(), max_feature_nodes=5, update_interval=0)


def test_rows_read_back_in_blocks_give_the_same_graph(tmp_path, monkeypatch):
    """The capped loop's rows go through a file read back in blocks (saelab.trace.rows): with blocks of one
    row the partial influences equal circuit-tracer's on the same rows (1e-5 relative) and the graph is
    identical to the one read back in one block."""
    peer("circuit_tracer")
    import torch
    from circuit_tracer.graph import compute_partial_influences

    t = tiny.tiny_llama(tmp_path)
    tc, toks = tiny.plt_transcoders(tiny.random_plts()), tiny.tokens()
    one_block = attribute(t.model, tc, toks, max_feature_nodes=24, batch_size=4, update_interval=2)
    monkeypatch.setattr(rows, "BLOCK_BYTES", 1)
    r = np.random.default_rng(1)
    edges = np.abs(r.normal(size=(9, 30))).astype(np.float32) * (r.random((9, 30)) < 0.5)
    row_node = np.array([30, 31, 0, 1, 2, 3, 4, 5, 6])  # two logits, then features 0..6 (of 20)
    edges[2:, :20] *= np.arange(20)[None] > row_node[2:, None]  # acyclic: features read higher-index ones
    buf = rows.RowBuffer(*edges.shape)
    buf.write(0, edges[:5])
    buf.write(5, edges[5:])
    np.testing.assert_array_equal(buf[0:9], edges)
    probs = np.array([0.6, 0.3], np.float32)
    got = rows.partial_influences(buf, probs, row_node)
    full = np.concatenate([edges, np.zeros((9, 2), np.float32)], 1)
    want = compute_partial_influences(
        torch.from_numpy(full), torch.from_numpy(probs), torch.from_numpy(row_node), device="cpu"
    ).numpy()
    assert np.abs(want[:20]).max() > 0
    np.testing.assert_allclose(got, want[:30], rtol=1e-5, atol=1e-7)
    blocked = attribute(t.model, tc, toks, max_feature_nodes=24, batch_size=4, update_interval=2)
    np.testing.assert_array_equal(blocked.active_features, one_block.active_features)
    np.testing.assert_array_equal(blocked.adjacency, one_block.adjacency)
