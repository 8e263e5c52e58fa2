"""The local replacement model on a tiny random Llama (2 blocks, grouped-query attention) with random JumpReLU
transcoders (a per-layer set with skip terms, and a CLT): the frozen model fed the clean run's embeddings and
MLP outputs reproduces the clean run, and every feature's and logit's incoming edges add up to its input
(a feature's pre-activation less b_enc, a logit's demeaned unembedding row times the final norm's output)
less what no node writes (the transcoders' b_dec, and position 0's MLP outputs, which circuit-tracer leaves
out). Float32; to 1e-4 of the largest input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.models.config import ModelConfig
from saelab.trace import attribute, transcoders
from saelab.trace.linearize import check_model, layer_pattern, linear_forward, record
from saelab.trace.prune import prune
from tests.trace import tiny


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_edges_add_up_to_each_nodes_input(model, kind):
    tc, toks = tiny.transcoder_set(kind), tiny.tokens(seed=7, n=11)
    graph = attribute(model, tc, toks, batch_size=32).square()
    run = record(model, toks)
    skip = transcoders.skip_matrices(tc)
    params = jax.tree.map(lambda a: a.astype(jnp.float32), model.params)
    lin = lambda embed, writes: np.asarray(linear_forward(params, model.cfg, run.frozen, skip, embed, writes))
    skip_out = 0.0 if skip is None else jnp.einsum("lpd,lde->lpe", run.mlp_in, skip)
    writes = run.mlp_out - skip_out  # (L, pos, d): what each MLP adds beyond its skip
    clean = lin(run.embed, writes)
    scale = lambda a: 1e-4 * np.abs(a).max()
    np.testing.assert_allclose(clean[:-1], run.mlp_in, atol=scale(run.mlp_in))
    np.testing.assert_allclose(clean[-1], run.final, atol=scale(run.final))

    p = tc.replacement.params
    b_dec = p.b_dec if tc.is_clt else jnp.stack([q.b_dec for q in p])  # (L, d)
    silent = jnp.broadcast_to(b_dec[:, None], writes.shape).at[:, 0].set(writes[:, 0])  # no node writes these
    rest = lin(jnp.zeros_like(run.embed), silent)  # (L + 1, pos, d)

    l, c = graph.active_features[:, 0], graph.active_features[:, 1]
    enc = transcoders.encoder_vectors(tc, l, graph.active_features[:, 2])  # (n, d)
    total = np.sum(enc * np.asarray(run.mlp_in)[l, c], -1)  # pre-activation less b_enc
    got = graph.adjacency[: graph.n_features].sum(1) + np.sum(enc * rest[l, c], -1)
    np.testing.assert_allclose(got, total, atol=scale(total))

    w_u = np.asarray(model.params.unembed, np.float32)
    vec = w_u[[t.vocab_idx for t in graph.logit_targets]] - w_u.mean(0)
    total = vec @ np.asarray(run.final[-1])
    got = graph.adjacency[graph.logit_start :].sum(1) + vec @ rest[-1, -1]
    np.testing.assert_allclose(got, total, atol=scale(total))
    assert not graph.adjacency[graph.error_start : graph.logit_start].any()  # errors and tokens have no inputs


def test_named_targets_and_a_longer_prompt(model):
    """A named target is the one logit node; a prompt extended by 5 tokens (10 and 15 tokens, one padding
    bucket) keeps every feature of the shorter one and the same edges among them and from its tokens
    (attention is causal), to 1e-5 of the largest."""
    tc = tiny.plt_transcoders(tiny.random_plts())
    short = tiny.tokens(seed=3, n=9)
    g = attribute(model, tc, short, targets=[42]).square()
    assert [t.vocab_idx for t in g.logit_targets] == [42] and g.n_logits == 1
    h = attribute(model, tc, np.concatenate([short, [5, 6, 7, 8, 9]]), targets=[42]).square()
    where = {tuple(f): i for i, f in enumerate(h.active_features.tolist())}
    ih = [where[tuple(f)] for f in g.active_features.tolist()]  # KeyError if a feature went missing
    ig = list(range(g.n_features))
    tol = 1e-5 * np.abs(g.adjacency).max()
    np.testing.assert_allclose(h.adjacency[np.ix_(ih, ih)], g.adjacency[np.ix_(ig, ig)], atol=tol)
    tok_g, tok_h = g.token_start + np.arange(g.n_pos), h.token_start + np.arange(g.n_pos)
    np.testing.assert_allclose(h.adjacency[np.ix_(ih, tok_h)], g.adjacency[np.ix_(ig, tok_g)], atol=tol)


def test_bad_input_is_refused_with_the_fix(model):
    tc = tiny.plt_transcoders(tiny.random_plts())
    with pytest.raises(ValueError, match="one prompt's token ids"):
        attribute(model, tc, tiny.tokens()[None])
    with pytest.raises(ValueError, match="replace 1 MLPs; the model has 2"):
        attribute(model, tiny.plt_transcoders(tiny.random_plts()[:1]), tiny.tokens())
    with pytest.raises(ValueError, match="outside the vocabulary"):
        attribute(model, tc, tiny.tokens(), targets=[tiny.VOCAB])
    sandwich = ModelConfig(family="gemma2", n_layers=1, d_model=8, n_heads=1, n_kv_heads=1, d_head=8, d_mlp=8,
                           vocab_size=10, max_positions=8, norm_eps=1e-6, norm_placement="sandwich")  # fmt: skip
    with pytest.raises(ValueError, match="pre-norm sequential"):
        check_model(sandwich)
    graph = attribute(model, tc, tiny.tokens())
    with pytest.raises(ValueError, match="edge_threshold must be between 0 and 1"):
        prune(graph, edge_threshold=1.5)


def test_compact_patterns_are_the_clean_runs(model):
    """The patterns recomputed from the clean run's queries and keys (what attribute holds) equal the
    model's own hook_pattern (1e-6), and the frozen model is the same with either (1e-5 of the largest)."""
    toks = tiny.tokens(seed=7, n=11)
    full, compact = record(model, toks), record(model, toks, compact=True)
    assert compact.frozen.pattern is None and compact.frozen.q.shape[:2] == (tiny.N_LAYERS, len(toks))
    for l in range(tiny.N_LAYERS):
        np.testing.assert_allclose(layer_pattern(compact.frozen, l, model.cfg), full.frozen.pattern[l], atol=1e-6)
    params = jax.tree.map(lambda a: a.astype(jnp.float32), model.params)
    writes = full.mlp_out
    want = np.asarray(linear_forward(params, model.cfg, full.frozen, None, full.embed, writes))
    got = np.asarray(linear_forward(params, model.cfg, compact.frozen, None, full.embed, writes))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
