"""The evaluators' glue on a real (tiny, random) saelab model: the core splice's masks against the same edits
made through the public hook API, and `--suite core,mdl,meta-structure` end to end on a text corpus."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.evals.config import EvalConfig
from saelab.evals.saebench import core_splice, registry, suite
from saelab.sae import ReLUConfig, SAEParams, decode, encode, save_saelens
from tests.trace.tiny import BOS, VOCAB, D, tiny_llama

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"))


def _sae(seed: int = 0) -> tuple[SAEParams, ReLUConfig]:
    r = np.random.default_rng(seed)
    w = jnp.asarray(r.normal(size=(D, 96)).astype(np.float32) / np.sqrt(D))
    cfg = ReLUConfig(d_in=D, d_sae=96)
    return SAEParams(w, jnp.full((96,), 0.05), w.T, jnp.zeros(D), None), cfg


def test_core_splice_equals_the_same_edits_through_hooks(tiny) -> None:
    """SAE at ordinary tokens only (BOS and EOS keep their value), zero ablation everywhere, CE/KL counted at
    ordinary positions: the jitted splice's sums equal those of logits from `run_with_hooks` (1e-5 relative)."""
    model = tiny.model
    params, cfg = _sae()
    r = np.random.default_rng(1)
    toks = r.integers(3, VOCAB, size=(2, 9)).astype(np.int32)
    toks[:, 0], toks[1, 4] = BOS, 2  # BOS first, an EOS inside
    special = jnp.asarray([0, BOS, 2])
    enc = lambda p, x: encode(p, x, cfg)
    got = core_splice.make_splice_fn(model.cfg, HOOK, enc, decode)(model.params, params, jnp.asarray(toks), special)
    keep = jnp.asarray(~np.isin(toks, [0, BOS, 2]))

    def splice(x):
        rec = decode(params, enc(params, x.reshape(-1, D))).reshape(x.shape)
        return jnp.where(keep[..., None], rec, x)

    run = lambda fn: model.run_with_hooks(toks, fwd_hooks=[(HOOK, fn)] if fn else [])
    want = core_splice.ce_kl_sums(jnp.asarray(toks), keep, run(None), run(splice), run(jnp.zeros_like))
    for a, b, name in zip(got, want, core_splice.SpliceSums._fields, strict=True):
        np.testing.assert_allclose(float(a), float(b), rtol=1e-5, err_msg=name)
    assert float(want.kl_abl) > float(want.kl_sae) > 0


def test_suite_runs_core_mdl_and_meta_structure(tiny, tmp_path) -> None:
    """The quick suite on the tiny model: every metric present and finite where it must be, on one batch."""
    params, cfg = _sae()
    sae_dir = save_saelens(tmp_path / "sae", params, cfg, {"hook_name": HOOK, "model_name": str(tiny.path)})
    text = tmp_path / "words.txt"
    r = np.random.default_rng(2)
    text.write_text("\n\n".join(" ".join(f"w{i}" for i in r.integers(3, VOCAB, 60)) for _ in range(40)))
    cfg = EvalConfig(
        sae=sae_dir, corpus=f"text:{text}", split="all", tokens=512, context=32, batch=4, progress=False,
        suite="core,mdl,meta-structure", suite_quick=True, out=tmp_path / "out.json",
    )  # fmt: skip
    result = suite.run(cfg, model=tiny.model)
    core = result["core"]
    assert 0 < core["tokens"] <= 4 * 31 and 0 < core["l0"] <= 96  # one batch, BOS / EOS / padding left out
    assert all(np.isfinite(core[k]) for k in ("explained_variance", "ce_loss_score", "kl_div_score", "mse"))
    assert len(result["mdl"]["rows"]) == 18 and result["meta-structure"]["meta_width"] == 24
    assert (tmp_path / "out.md").read_text().count("\n## ") == 3
    assert json.loads((tmp_path / "out.json").read_text())["meta"]["complete"]


def test_suite_keeps_finished_metrics_when_a_later_one_fails(tiny, tmp_path, monkeypatch) -> None:
    """A long suite that stops in its second evaluator still leaves the first one's numbers on disk, marked
    incomplete."""
    params, cfg = _sae()
    sae_dir = save_saelens(tmp_path / "sae", params, cfg, {"hook_name": HOOK, "model_name": str(tiny.path)})

    def fail(ctx):
        raise RuntimeError("stopped")

    monkeypatch.setitem(
        registry.EVALUATORS, "meta-structure", registry.EVALUATORS["meta-structure"]._replace(evaluate=fail)
    )
    text = tmp_path / "words.txt"
    text.write_text("\n\n".join(" ".join(f"w{i}" for i in range(3, 60)) for _ in range(40)))
    cfg = EvalConfig(
        sae=sae_dir, corpus=f"text:{text}", split="all", suite="mdl,meta-structure", suite_quick=True, progress=False,
        tokens=512, context=32, batch=4, out=tmp_path / "out.json",
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="stopped"):
        suite.run(cfg, model=tiny.model)
    kept = json.loads((tmp_path / "out.json").read_text())
    assert "mdl" in kept and "meta-structure" not in kept and kept["meta"]["complete"] is False
    assert (tmp_path / "out.md").read_text().count("\n## ") == 1


def _rescaled(params: SAEParams, seed: int) -> SAEParams:
    """The same SAE function with decoder row i scaled by c_i and code i by 1 / c_i (c in [0.01, 0.1])."""
    c = jnp.asarray(np.random.default_rng(seed).uniform(0.01, 0.1, params.W_dec.shape[0]).astype(np.float32))
    return params._replace(W_enc=params.W_enc / c, b_enc=params.b_enc / c, W_dec=params.W_dec * c[:, None])


def test_suite_scores_an_sae_as_its_unit_decoder_twin(tiny, tmp_path) -> None:
    """SAEBench folds decoder norms before it evaluates: a ReLU SAE whose decoder rows have norms 0.01-0.1 gets the
    metrics of the same SAE with unit rows (meta-structure and MDL read code sizes and decoder rows), to 1e-4."""
    params, cfg = _sae()
    params = params._replace(W_dec=params.W_dec / jnp.linalg.norm(params.W_dec, axis=1, keepdims=True))
    text = tmp_path / "words.txt"
    text.write_text("\n\n".join(" ".join(f"w{i}" for i in range(3, 60)) for _ in range(40)))
    results = []
    for name, p in (("unit", params), ("scaled", _rescaled(params, 5))):
        sae_dir = save_saelens(tmp_path / name, p, cfg, {"hook_name": HOOK, "model_name": str(tiny.path)})
        run_cfg = EvalConfig(
            sae=sae_dir, corpus=f"text:{text}", split="all", tokens=512, context=32, batch=4, progress=False,
            suite="mdl,meta-structure", suite_quick=True, out=tmp_path / f"{name}.json",
        )  # fmt: skip
        results.append(suite.run(run_cfg, model=tiny.model))
    unit, scaled = results
    assert unit["meta"]["decoder_norm"] == "unit rows" and scaled["meta"]["decoder_norm"].startswith("folded")
    for name in ("mdl", "meta-structure"):
        for key, value in unit[name].items():
            if isinstance(value, float) and key != "seconds":
                np.testing.assert_allclose(scaled[name][key], value, rtol=1e-4, atol=1e-6, err_msg=f"{name}.{key}")
