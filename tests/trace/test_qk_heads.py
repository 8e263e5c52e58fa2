"""The QK side of a graph's head ranking (`saelab.trace.qk_heads`) on the tiny random Llama (grouped-query
attention, rotary) with random transcoders. Oracles: the model's own pre-softmax scores for the clean
queries and keys, and central differences of sum G * scores with one head's output taken out, for the
gradient that gives every head's effect at once."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from saelab.trace import heads, qk_heads
from saelab.trace.prune import prune


def test_head_flow_spreads_the_ranking_over_earlier_key_positions(traced):
    tc, graph, st = traced
    kept = prune(graph).edge_mask
    flow = heads.head_flow(st, tc, graph, kept, 60)
    np.testing.assert_allclose(flow.sum((2, 3)), heads.head_ranking(st, tc, graph, kept, 60), rtol=1e-6)
    q, s = np.indices(flow.shape[2:])
    assert flow.min() >= 0 and flow.sum() > 0 and np.all(flow[:, :, s >= q] == 0)  # keys before queries only


def test_scores_at_zero_taps_are_the_models(traced, model):
    _, graph, st = traced
    names = [f"blocks.{l}.attn.hook_attn_scores" for l in range(graph.n_layers)]
    ids = np.asarray(graph.tokens, np.int32)[None]
    _, cache = model.run_with_cache(ids, names, pad_mask=np.ones_like(ids))
    want = np.stack([np.asarray(cache[n][0], np.float32) for n in names])  # (L, heads, q, k)
    zeros = [jnp.zeros_like(st.embed)] * graph.n_layers
    got = np.asarray(qk_heads.scores(st._replace(cfg=None), zeros, cfg=st.cfg))
    causal = np.tril(np.ones(want.shape[-2:], bool))
    np.testing.assert_allclose(got[..., causal], want[..., causal], atol=1e-4 * np.abs(want[..., causal]).max())


def test_each_heads_effect_is_the_change_of_sum_g_scores_without_its_output(traced, model):
    """For every head of layer 0 and two of layer 1: |d/de sum G * scores(taps = -e * its output)| at e = 0,
    by central differences, equals `qk_head_effects` (1e-3 relative); heads of the
    last layer reach no later query or key and score 0."""
    tc, graph, st = traced
    flow = heads.head_flow(st, tc, graph, prune(graph).edge_mask, 60)
    out = qk_heads.head_outputs(model, graph.tokens)
    effects = qk_heads.qk_head_effects(st, flow, out)
    g = qk_heads.score_sensitivity(flow, np.asarray(st.frozen.pattern))
    arrays = st._replace(cfg=None)
    j = lambda taps: float(jnp.sum(g * qk_heads.scores(arrays, taps, cfg=st.cfg)))
    eps, n_layers = 1.0, graph.n_layers  # central differences are exact for a quadratic at any step
    assert np.all(effects[-1] == 0) and effects[:-1].max() > 0
    for layer, head in [(0, h) for h in range(st.cfg.n_heads)] + [(1, 0), (1, 1)]:
        if layer >= n_layers - 1:
            continue
        taps = [(-out[l, :, head]) if l == layer else jnp.zeros_like(st.embed) for l in range(n_layers)]
        change = (j([eps * t for t in taps]) - j([-eps * t for t in taps])) / (2 * eps)
        np.testing.assert_allclose(abs(change), effects[layer, head], rtol=1e-3, atol=1e-6 * effects.max())
