"""A cross-layer transcoder as the replacement model, on SmolLM2 cut to three blocks: its layer-by-layer steps on
the clean inputs are saelab.sae.clt's own encode and decode, error terms give the clean model, and `saelab eval`
takes a CLT in circuit-tracer's format."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab import evals
from saelab.evals.replacement import ReplacementSums, clt_replacement, finish, make_replacement_fn
from saelab.models import Model
from saelab.sae import clt
from saelab.sae.clt import CLTConfig
from saelab.sae.formats import circuit_tracer
from tests.models.small import sliced_smollm2

LAYERS = 3
HOOKS = [(f"blocks.{i}.ln2.hook_normalized", f"blocks.{i}.hook_mlp_out") for i in range(LAYERS)]


@pytest.fixture(scope="module")
def small() -> Model:
    return sliced_smollm2(LAYERS)


@pytest.fixture(scope="module")
def tokens(small: Model) -> jax.Array:
    toks, mask = small.to_tokens(["Sort the keys of a mapping and return them as a list, largest first."] * 2)
    return jnp.asarray(toks[:, -int(mask.sum(1).min()) :])


def _clt(small: Model, activation: str) -> tuple[clt.CLTParams, CLTConfig]:
    d = small.cfg.d_model
    own = {"k": 4} if activation == "topk" else {"jumprelu_init_threshold": 0.05}  # about half fire
    cfg = CLTConfig(d_in=d, d_sae=32, d_out=d, n_layers=LAYERS, activation=activation, **own)
    params = clt.init_params(jax.random.key(3), cfg)
    noise = lambda seed, a: 0.1 * jax.random.normal(jax.random.key(seed), a.shape)
    return params._replace(b_enc=noise(4, params.b_enc), b_dec=noise(5, params.b_dec)), cfg


@pytest.mark.parametrize("activation", ["topk", "jumprelu"])
def test_layer_steps_on_the_clean_inputs_are_the_clts_own_forward(small, tokens, activation) -> None:
    params, cfg = _clt(small, activation)
    rep = clt_replacement(params, cfg, HOOKS)
    _, cache = small.run_with_cache(tokens, [h for pair in HOOKS for h in pair])
    xs = [cache[h_in][:, 1:].reshape(-1, cfg.d_in).astype(jnp.float32) for h_in, _ in HOOKS]
    carry, ys, codes = rep.carry, [], []
    for i, x in enumerate(xs):
        y, c, carry = rep.step(params, i, carry, x)
        ys.append(y)
        codes.append(c)
    x = jnp.stack(xs, axis=1)  # (n, L, d_in)
    want_codes = clt.encode(params, x, cfg)
    np.testing.assert_allclose(np.stack(codes, 1), want_codes, rtol=1e-5, atol=1e-6)
    assert float((want_codes > 0).sum()) > 0  # some latents fire: the decode check has teeth
    np.testing.assert_allclose(np.stack(ys, 1), clt.decode(params, want_codes), rtol=1e-4, atol=1e-5)


def test_error_terms_make_the_clean_model(small, tokens) -> None:
    params, cfg = _clt(small, "topk")
    rep = clt_replacement(params, cfg, HOOKS)
    s, recon = make_replacement_fn(small.cfg, rep)(small.params, rep.params, tokens)
    out = finish(ReplacementSums(*s))
    np.testing.assert_allclose(out["ce_loss_replacement_with_errors"], out["ce_loss_clean"], rtol=1e-5)
    assert abs(out["kl_div_with_errors"]) < 1e-5 and out["kl_div"] > 1e-2
    assert [float(r.l0) / float(r.n) for r in recon] == [4.0] * LAYERS


def test_saelab_eval_takes_a_clt_in_circuit_tracers_format(small, tmp_path) -> None:
    params, cfg = _clt(small, "jumprelu")
    folder = circuit_tracer.save_clt(tmp_path / "clt", params, cfg, model_name="smollm2-135m")
    text = tmp_path / "small.txt"
    text.write_text("\n\n".join(f"Item {i}: a sorted list of {i} keys, largest first." for i in range(12)))
    cfg_eval = evals.EvalConfig(sae=folder, corpus=f"text:{text}", split="all", tokens=128, context=16, batch=4)
    out = evals.run(cfg_eval.model_copy(update={"progress": False}), model=small)
    assert out["meta"]["kind"] == "cross_layer_transcoder"
    assert [(r["hook"], r["hook_out"]) for r in out["layers"]] == HOOKS
    assert abs(out["kl_div_with_errors"]) < 1e-5 < out["kl_div"]
