"""Head rankings from attribution graphs (`method = "graph"`) on a tiny random Llama with the SmolLM2
tokenizer (IOI is built from real names) and random JumpReLU transcoders saved as a trace folder."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.circuits.config import CircuitsConfig
from saelab.circuits.graph import graph_heads, prompt_tokens
from saelab.circuits.run import make_task, run
from saelab.models import Model
from saelab.sae import JumpReLUConfig, SAEParams
from saelab.sae.formats import circuit_tracer as ct
from saelab.trace import attribute, qk
from saelab.trace import transcoders as trace_transcoders
from saelab.trace.heads import head_flow
from saelab.trace.prune import prune
from saelab.trace.qk_heads import head_outputs, qk_head_effects

D, LAYERS, D_SAE = 32, 3, 40


def _transcoders(folder, seed: int = 1):
    r = np.random.default_rng(seed)
    f = lambda *s, scale=0.5: jnp.asarray(r.normal(size=s) * scale, jnp.float32)
    cfg = JumpReLUConfig(d_in=D, d_sae=D_SAE, d_out=D)
    layers = [
        (SAEParams(f(D, D_SAE), f(D_SAE, scale=0.2), f(D_SAE, D), f(D, scale=0.1), jnp.full(D_SAE, 0.1)), cfg)
        for _ in range(LAYERS)
    ]
    return ct.save_transcoder_set(folder, layers, model_name="tiny-llama", scan="tiny/plt")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny, tokenizer):
    tmp = tmp_path_factory.mktemp("graph")
    path = tiny(tmp / "m", "llama", tokenizer, initializer_range=0.2)
    return path, _transcoders(tmp / "tc")


def test_graph_method_is_the_mean_of_each_prompts_normalised_ranking(setup, tmp_path) -> None:
    """circuits.json holds the graph rankings, scored by AUC like the others; each equals the mean over the
    first `graph_prompts` prompts of each graph's head ranking divided by its sum (1e-6), recomputed here:
    the OV flow (`graph`), and the OV flow plus the QK effects of patching each head's output to its output
    on the paired negative (`graph-qk`)."""
    path, folder = setup
    cfg = CircuitsConfig(
        task="ioi", model=str(path), method="graph", transcoders=folder, prompts=3, graph_prompts=2,
        graph_max_features=64, graph_edges=200, mean_ablation=False, top_n=3, progress=False, out=tmp_path / "out",
    )  # fmt: skip
    result = run(cfg)
    for k in ("graph", "graph-qk"):
        assert 0 <= result["auc"][k] <= 1 and result["runtime_s"][k] > 0
    model = Model.load(str(path))
    task = make_task(model, cfg, cfg.prompts, (cfg.seed, 0))
    tc = trace_transcoders.load(folder)
    want, want_qk = np.zeros((LAYERS, 4)), np.zeros((LAYERS, 4))
    for i in range(2):
        toks = prompt_tokens(task, i)
        assert toks[0] == task.pos[i][task.mask[i] == 1][0] and len(toks) == int(task.mask[i].sum())
        graph = attribute(model, tc, toks, max_feature_nodes=64)
        st = qk.prepare(model, tc, graph)
        flow = head_flow(st, tc, graph, prune(graph).edge_mask, 200)
        patched = head_outputs(model, toks) - head_outputs(model, prompt_tokens(task, i, negative=True))
        r, r_qk = flow.sum((2, 3)), flow.sum((2, 3)) + qk_head_effects(st, flow, patched)
        want += r / r.sum() / 2
        want_qk += r_qk / r_qk.sum() / 2
    got = {k: np.reshape(result["effects"][k]["normalised"], want.shape) for k in ("graph", "graph-qk")}
    np.testing.assert_allclose(got["graph"], want, atol=1e-6)
    np.testing.assert_allclose(got["graph-qk"], want_qk, atol=1e-6)
    assert not np.allclose(want, want_qk)  # the QK side moves the ranking
    assert np.isclose(want.sum(), 1.0) and want[0].sum() > 0  # a layer-0 head moves the tokens themselves


def test_graph_heads_of_greater_than_leave_the_scoring_tokens_off(setup) -> None:
    path, folder = setup
    model = Model.load(str(path))
    cfg = CircuitsConfig(task="greater-than", model=str(path), progress=False)
    task = make_task(model, cfg, 2, (0, 0))
    assert task.scoring_tokens > 0
    toks = prompt_tokens(task, 0)
    assert len(toks) == int(task.mask[0].sum()) - task.scoring_tokens
    effects = graph_heads(model, task, folder, prompts=1, max_feature_nodes=32, max_edges=50, progress=False)
    for k, e in effects.items():
        assert e.method == k and e.effect.shape == (LAYERS, 4) and np.isclose(e.effect.sum(), 1)


def test_graph_method_needs_transcoders() -> None:
    with pytest.raises(ValueError, match="set transcoders"):
        CircuitsConfig(task="ioi", method="graph")
