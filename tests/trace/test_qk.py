"""QK attribution on a tiny random Llama (2 blocks, grouped-query attention, rotary) with random JumpReLU
transcoders (a per-layer set with skip terms, and a CLT). circuit-tracer has no QK attribution, so the
oracles are the model's own attention scores and hand computations. Float32; tolerances: 1e-5 of the
largest |value| compared, as each test states."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.trace import attribute, qk, qk_cli, transcoders
from saelab.trace.linearize import linear_forward
from saelab.trace.prune import influence, normalize
from tests.trace import tiny


def test_stream_is_the_trace_linearisation(traced):
    """qk's frozen forward gives the same MLP inputs as saelab.trace.linearize (1e-5 of the largest)."""
    _, graph, st = traced
    r = np.random.default_rng(0)
    embed = jnp.asarray(r.normal(size=st.embed.shape), jnp.float32)
    writes = jnp.asarray(r.normal(size=st.errors.shape), jnp.float32)
    ours = np.asarray(qk.linear_stream(st, embed, writes, jnp.zeros_like(writes))[1])
    theirs = np.asarray(linear_forward(st.params, st.cfg, st.frozen, st.skip, embed, writes))[:-1]
    np.testing.assert_allclose(ours, theirs, atol=1e-5 * np.abs(theirs).max())


def test_strongest_edges_are_the_largest_cross_position_ones(traced):
    """Against a brute-force numpy ranking of the masked adjacency (exact)."""
    _, graph, _ = traced
    t, s = qk_cli.strongest_edges(graph, 12, chunk=7)
    n, pos = graph.n_features, graph.active_features[:, 1]
    a = np.where(pos[None] < pos[:, None], np.abs(graph.adjacency[:n, :n]), 0.0)
    want = np.sort(a.reshape(-1))[::-1][:12]
    np.testing.assert_array_equal(a[t, s], want)
    assert np.all(pos[s] < pos[t])


def test_edges_by_influence_are_prunings_edge_scores(traced):
    """Ranked by influence, the edges are the largest of pruning's edge score |A|_n[t, s] (w + I)[t], with
    saelab.trace.prune's own normalize and influence (ranking exact, scores to 1e-5 relative)."""
    _, graph, _ = traced
    t, s = qk_cli.strongest_edges(graph, 10, by="influence", chunk=50)
    a_n = normalize(jnp.asarray(graph.square().adjacency))
    w = jnp.asarray(graph.logit_weights())
    score = np.asarray(a_n * (w + influence(a_n, w)[0])[:, None])[: graph.n_features, : graph.n_features]
    pos = graph.active_features[:, 1]
    score = np.where(pos[None] < pos[:, None], score, 0.0)
    np.testing.assert_allclose(score[t, s], np.sort(score.reshape(-1))[::-1][:10], rtol=1e-5)
    with pytest.raises(ValueError, match="'weight' or 'influence'"):
        qk_cli.strongest_edges(graph, 3, by="size")


def test_head_shares_sum_to_the_edge(traced):
    """The per-(layer, head, query) split of each of the 8 strongest cross-position edges adds up to the
    graph's edge weight (1e-5 of the largest edge); nothing is given to the source's own position or to
    layers at or below the source's."""
    tc, graph, st = traced
    t, s = qk_cli.strongest_edges(graph, 8)
    eh = qk.edge_heads(st, tc, graph, t, s)
    np.testing.assert_allclose(eh.shares.sum((1, 2, 3)), eh.weight, atol=1e-5 * np.abs(eh.weight).max())
    src_pos, src_layer = graph.active_features[s, 1], graph.active_features[s, 0]
    assert np.all(eh.shares[np.arange(len(s)), :, :, src_pos] == 0)
    for e, l in enumerate(src_layer):
        assert np.all(eh.shares[e, : l + 1] == 0)


@pytest.mark.parametrize(("layer", "head", "query", "key"), [(0, 1, 6, 2), (1, 3, 10, 4), (1, 0, 5, 5)])
def test_score_components_sum_to_the_models_score(model, traced, layer, head, query, key):
    """The pairwise contributions (nodes and the three constant rows on both sides) add up to the model's own
    hook_attn_scores at (head, query, key) (1e-5 of the largest |score| of the layer), and the last constant
    (attention and norm biases, b_Q, b_K) is zero in a Llama (1e-5 of the largest component)."""
    _, graph, st = traced
    hs = qk.head_scores(st, layer, head, query, key)
    ids = np.asarray(graph.tokens, np.int32)[None]
    name = f"blocks.{layer}.attn.hook_attn_scores"
    _, cache = model.run_with_cache(ids, [name], pad_mask=np.ones_like(ids))
    scores = np.asarray(cache[name][0], np.float32)  # (heads, q, k)
    pairs = hs.scale * hs.query_vectors @ hs.key_vectors.T
    tol = 1e-5 * np.abs(np.tril(scores[head])).max()
    assert abs(pairs.sum() - scores[head, query, key]) < tol
    assert abs(hs.score - scores[head, query, key]) < tol
    # what is left after the nodes, b_dec and position 0's outputs: no attention or norm biases in a Llama
    assert np.abs(hs.query_vectors[-1]).max() < 1e-5 * np.abs(hs.query_vectors).max()
    assert np.abs(hs.key_vectors[-1]).max() < 1e-5 * np.abs(hs.key_vectors).max()
    # components that cannot reach the query: later positions' nodes, layers at or above `layer`
    feats = graph.active_features
    late = (feats[:, 1] > query) | (feats[:, 0] >= layer)
    assert np.all(hs.query_vectors[: graph.n_features][late] == 0)


def test_feature_pair_by_hand(model):
    """A layer-0 feature at the query position and one at the key position, read by layer 1's head 2: their
    pair contribution is scale * R_q(N1_q(a_f d_f) W_Q) . R_k(N1_k(a_g d_g) W_K), computed here in numpy
    with the rotate-half rotary (1e-5 relative)."""
    tc = tiny.plt_transcoders(tiny.random_plts())
    graph = attribute(model, tc, tiny.tokens(seed=7, n=11), batch_size=64)
    st = qk.prepare(model, tc, graph)
    feats, query, key, head = graph.active_features, 9, 3, 2
    f = int(np.flatnonzero((feats[:, 0] == 0) & (feats[:, 1] == query))[0])
    g = int(np.flatnonzero((feats[:, 0] == 0) & (feats[:, 1] == key))[0])
    hs = qk.head_scores(st, 1, head, query, key)

    p, cfg = model.params.layers[1], model.cfg
    w_dec = np.asarray(tc.replacement.params[0].W_dec, np.float64)
    ln1 = np.asarray(st.frozen.ln1, np.float64)[1]
    w_ln = np.asarray(p.ln1.w, np.float64)
    inv = 1.0 / cfg.rope_theta ** (np.arange(0, cfg.d_head, 2) / cfg.d_head)

    def rope(y, pos):
        cos, sin = np.tile(np.cos(pos * inv), 2), np.tile(np.sin(pos * inv), 2)
        half = len(y) // 2
        return y * cos + np.concatenate([-y[half:], y[:half]]) * sin

    def read(i, w, h, pos):
        x = graph.activations[i] * w_dec[feats[i, 2]] * ln1[pos] * w_ln
        return rope(x @ np.asarray(w, np.float64)[:, h], pos)

    kvh = head // (cfg.n_heads // cfg.n_kv_heads)
    want = cfg.d_head**-0.5 * read(f, p.attn.W_Q, head, query) @ read(g, p.attn.W_K, kvh, key)
    got = hs.scale * hs.query_vectors[f] @ hs.key_vectors[g]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_top_pairs_are_the_largest(traced):
    """top_pairs against the full pair matrix in numpy (exact ranking, values to 1e-6 relative)."""
    _, _, st = traced
    r = np.random.default_rng(1)
    qv, kv = r.normal(size=(37, 8)).astype(np.float32), r.normal(size=(23, 8)).astype(np.float32)
    vals, i, j = (np.asarray(a) for a in qk.top_pairs(jnp.asarray(qv), jnp.asarray(kv), 0.5, k=10, chunk=8))
    full = 0.5 * qv @ kv.T
    want = np.sort(np.abs(full).reshape(-1))[::-1][:10]
    np.testing.assert_allclose(np.abs(vals), want, rtol=1e-6)
    np.testing.assert_allclose(vals, full[i, j], rtol=1e-6)


def test_bad_inputs_are_named(model, traced):
    tc, graph, st = traced
    t, s = qk_cli.strongest_edges(graph, 1)
    with pytest.raises(ValueError, match="cross-position"):
        qk.edge_heads(st, tc, graph, s, t)  # reversed: the source after the target
    with pytest.raises(ValueError, match="feature nodes"):
        qk.edge_heads(st, tc, graph, [graph.n_features], s)
    with pytest.raises(ValueError, match="not these transcoders'"):
        qk.prepare(model, tiny.plt_transcoders(tiny.random_plts(seed=5)), graph)
    with pytest.raises(ValueError, match="key <= query"):
        qk.head_scores(st, 0, 0, 2, 5)
    with pytest.raises(ValueError, match="outside the model"):
        qk.head_scores(st, 0, 9, 5, 2)


def test_trace_qk_command(model, tmp_path, capsys):
    """`saelab trace qk` on a saved graph writes the report: each edge's head splits add up to its weight
    (1e-5 of the largest), each head's score is the model's and its top pair is its largest."""
    import argparse
    import json

    from saelab.trace import graph as graphs
    from saelab.trace import qk_cli

    layers = tiny.random_plts()
    folder = tiny.save_plts(layers, tmp_path / "tc")
    graph = attribute(model, transcoders.load(folder), tiny.tokens(seed=7, n=11), batch_size=64)
    path = graphs.save(graph, tmp_path / "g.graph.npz")
    parser = argparse.ArgumentParser()
    qk_cli.register(parser.add_subparsers())
    argv = ["trace qk", str(path), "--transcoders", str(folder), "--model", model.source, "--edges", "3"]
    args = parser.parse_args(argv)
    args.fn(args)
    report = json.loads((tmp_path / "g.qk.json").read_text())
    assert len(report["edges"]) == 3 and "3 edges" in capsys.readouterr().out
    w = np.array([e["weight"] for e in report["edges"]])
    np.testing.assert_allclose([e["heads_sum"] for e in report["edges"]], w, atol=1e-5 * np.abs(w).max())
    for hd in report["heads"]:
        pairs = [abs(p["contribution"]) for p in hd["top_pairs"]]
        assert pairs == sorted(pairs, reverse=True) and hd["key_pos"] < hd["query_pos"]
        assert {p["query"]["kind"] for p in hd["top_pairs"]} <= {
            "feature",
            "error",
            "token",
            "decoder_bias",
            "bos",
            "bias",
        }
    with pytest.raises(ValueError, match="no graph file"):
        qk_cli._qk(parser.parse_args(["trace qk", str(tmp_path / "none.npz"), "--transcoders", str(folder)]))
