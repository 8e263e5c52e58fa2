"""The replacement model on SmolLM2 cut to three blocks: every MLP replaced at once. The true MLPs give the clean
model; random transcoders with error terms give the clean model too, and without them the forward a block-by-block
reference computes; a one-layer set is the single-transcoder splice; `saelab eval` of a multi-SAE run of
transcoders trained on the fly reports it all."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab import evals
from saelab.evals import splice
from saelab.evals.replacement import Replacement, ReplacementSums, finish, make_replacement_fn
from saelab.evals.transcoder import make_transcoder_splice_fn
from saelab.models import HookContext, Model
from saelab.models.transformer import embed, run_blocks, unembed
from saelab.sae import TopKConfig, encode, init_params
from saelab.sae.registry import forward as transcode
from tests.models.small import sliced_smollm2

LAYERS = 3
IN = tuple(f"blocks.{i}.ln2.hook_normalized" for i in range(LAYERS))
OUT = tuple(f"blocks.{i}.hook_mlp_out" for i in range(LAYERS))


@pytest.fixture(scope="module")
def small() -> Model:
    return sliced_smollm2(LAYERS)


@pytest.fixture(scope="module")
def tokens(small: Model) -> jax.Array:
    texts = ["Return the number of items in a container, counting nested lists once and only once."] * 2
    toks, mask = small.to_tokens(texts)
    return jnp.asarray(toks[:, -int(mask.sum(1).min()) :])


def _random_set(small: Model, layers=range(LAYERS)) -> tuple[Replacement, TopKConfig]:
    d = small.cfg.d_model
    cfg = TopKConfig(d_in=d, d_sae=64, d_out=d, k=8)
    params = tuple(init_params(jax.random.key(i), cfg) for i in layers)

    def step(p, i, carry, x):
        return transcode(p[i], x, cfg), encode(p[i], x, cfg), carry

    return Replacement(tuple(IN[i] for i in layers), tuple(OUT[i] for i in layers), params, step), cfg


def _run(small: Model, rep: Replacement, tokens) -> tuple[dict[str, float], tuple]:
    s, recon = make_replacement_fn(small.cfg, rep)(small.params, rep.params, tokens)
    return finish(ReplacementSums(*s)), recon


def test_the_true_mlps_are_the_clean_model(small, tokens) -> None:
    mlps = [small.params.layers[i].mlp for i in range(LAYERS)]

    def step(_, i, carry, h):
        p = mlps[i]
        return (jax.nn.silu(h @ p.W_gate) * (h @ p.W_in)) @ p.W_out, jnp.ones((h.shape[0], 1)), carry

    out, recon = _run(small, Replacement(IN, OUT, None, step), tokens)
    np.testing.assert_allclose(out["ce_loss_replacement"], out["ce_loss_clean"], rtol=1e-5)
    assert abs(out["kl_div"]) < 1e-5
    assert abs(out["ce_loss_zero_ablation"] - out["ce_loss_clean"]) > 0.1  # the MLPs matter: the check has teeth
    assert all(float(r.sse) < 1e-6 * float(r.sum_sq) for r in recon)


def test_error_terms_make_the_clean_model_and_without_them_the_blockwise_reference(small, tokens) -> None:
    rep, cfg = _random_set(small)
    out, recon = _run(small, rep, tokens)
    np.testing.assert_allclose(out["ce_loss_replacement_with_errors"], out["ce_loss_clean"], rtol=1e-5)
    assert abs(out["kl_div_with_errors"]) < 1e-5 and out["kl_div"] > 1e-2
    np.testing.assert_allclose(out["ce_loss_recovered_with_errors"], 1.0, atol=1e-3)
    assert [float(r.l0) / float(r.n) for r in recon] == [8.0] * LAYERS

    # reference: the blocks one at a time, each block's MLP output the transcoder of this forward's MLP input
    pad = jnp.ones(tokens.shape, jnp.int32)
    x = embed(small.params, small.cfg, tokens, jnp.maximum(jnp.cumsum(pad, axis=1) - 1, 0))
    for i in range(LAYERS):
        x = run_blocks(small.params, small.cfg, x, pad, _one_block_hooks(rep.params[i], cfg, i), i, i + 1)
    lp = jax.nn.log_softmax(unembed(small.params, small.cfg, x)[:, :-1])
    ce = -float(jnp.take_along_axis(lp, tokens[:, 1:, None], axis=-1).mean())
    np.testing.assert_allclose(out["ce_loss_replacement"], ce, rtol=1e-5)


def _one_block_hooks(params, cfg: TopKConfig, i: int) -> HookContext:
    """Block i's hooks: its MLP output replaced by the transcoder of this forward's MLP input (BOS kept)."""
    seen = {}

    def read(h):
        seen["x"] = h
        return h

    def write(y):
        x = seen["x"][:, 1:].reshape(-1, y.shape[-1])
        return y.at[:, 1:].set(transcode(params, x, cfg).reshape(y[:, 1:].shape))

    return HookContext({IN[i]: read, OUT[i]: write})


def test_a_one_transcoder_set_is_the_single_transcoder_splice(small, tokens) -> None:
    rep, cfg = _random_set(small, [1])
    out, recon = _run(small, rep, tokens)
    output = lambda p, x: transcode(p, x, cfg)
    codes = lambda p, x: encode(p, x, cfg)
    fn = make_transcoder_splice_fn(small.cfg, IN[1], OUT[1], output, codes)
    s, r = fn(small.params, rep.params[0], tokens, jnp.zeros((small.cfg.d_model,)))
    ref = splice.finish(s)
    for mine, theirs in [("ce_loss_replacement", "ce_loss_sae"), ("kl_div", "kl_div"), ("ce_loss_recovered",) * 2]:
        np.testing.assert_allclose(out[mine], ref[theirs], rtol=1e-5)
    np.testing.assert_allclose(float(recon[0].sse), float(r.sse), rtol=1e-5)


def test_saelab_eval_of_a_transcoder_set_reports_the_replacement_model(small, tmp_path, monkeypatch) -> None:
    from saelab.train import multi, stream
    from saelab.train.stream import ModelCache
    from tests.train.test_layer_transcoders import _cfg

    monkeypatch.setattr(stream, "MODELS", ModelCache())
    monkeypatch.setattr(stream.Model, "load", staticmethod(lambda name, dtype: small))
    text = tmp_path / "small.txt"
    text.write_text("\n\n".join(f"Paragraph {i}: the function returns a list of {i} sorted items." for i in range(12)))
    trained = multi.run(_cfg(f"text:{text}", tmp_path, "plt"))
    cfg = evals.EvalConfig(sae=trained.run_dir, corpus=f"text:{text}", split="all", tokens=256, context=16, batch=4)
    out = evals.run(cfg.model_copy(update={"progress": False}), model=small)
    assert [row["name"] for row in out["layers"]] == ["L0", "L1", "L2"]
    assert [row["hook_out"] for row in out["layers"]] == list(OUT)
    assert all(0 < row["l0"] <= 8 and row["explained_variance"] < 1 for row in out["layers"])
    assert abs(out["kl_div_with_errors"]) < 1e-5 < out["kl_div"]
    saved = Path(out["meta"]["out"])
    assert saved.parent == trained.run_dir and json.loads(saved.read_text())["kl_div"] == out["kl_div"]
    rows = [line for line in saved.with_suffix(".md").read_text().splitlines() if line.startswith("| L")]
    assert [row.split(" | ")[0] for row in rows] == ["| L0", "| L1", "| L2"]
