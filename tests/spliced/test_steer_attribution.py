"""Steering (add / clamp) and prompt-level attribution against hand computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.models import Model
from saelab.models.generate import generate
from saelab.spliced import SplicedModel
from saelab.spliced.attribution import attribute
from saelab.spliced.steer import Clamp, Steer, direction
from tests.spliced.conftest import HOOK

TOKS = np.asarray([[1, 5, 9, 13, 2, 7, 11]], np.int32)


def _gen(model: Model, hooks=None) -> np.ndarray:
    return np.asarray(generate(model.params, model.cfg, TOKS, np.ones_like(TOKS), 6, hooks=hooks).tokens)


def test_steering_with_alpha_zero_is_a_no_op(small_model: Model, sae) -> None:
    zero = Steer(direction(sae, [3, 7], [0.0, 0.0]))
    np.testing.assert_array_equal(_gen(small_model, {HOOK: zero}), _gen(small_model))
    strong = Steer(direction(sae, [3], [40.0]))
    assert not np.array_equal(_gen(small_model, {HOOK: strong}), _gen(small_model))


def test_steer_adds_the_decoder_rows_after_bos(small_model: Model, sae) -> None:
    d = direction(sae, [3, 7], [2.0, -0.5])
    np.testing.assert_allclose(d, 2.0 * sae.params.W_dec[3] - 0.5 * sae.params.W_dec[7], rtol=1e-6)
    x = jnp.ones((1, 4, small_model.cfg.d_model))
    y = Steer(d)(x, jnp.arange(4)[None])
    np.testing.assert_allclose(y[0, 0], x[0, 0])
    np.testing.assert_allclose(y[0, 1:], x[0, 1:] + d, rtol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        direction(sae, [10_000], [1.0])


def test_clamp_moves_the_stream_by_the_activation_change(small_model: Model, sae) -> None:
    spliced = SplicedModel(small_model, [sae], use_error_term=True)
    acts, inp, out = (f"{HOOK}.hook_sae_{s}" for s in ("acts_post", "input", "output"))
    _, clean = spliced.run_with_cache(TOKS, [acts, inp])
    _, edited = spliced.run_with_cache(TOKS, [out], hooks={acts: Clamp((4,), (5.0,))})
    a4 = np.asarray(clean[acts][0, :, 4])[:, None]
    hand = np.asarray(clean[inp][0]) + (5.0 - a4) * np.asarray(sae.params.W_dec[4])
    np.testing.assert_allclose(np.asarray(edited[out][0, 1:]), hand[1:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(edited[out][0, 0]), np.asarray(clean[inp][0, 0]), atol=1e-6)


def test_attribution_matches_gradients_and_ablations_by_hand(small_model: Model, sae) -> None:
    target = 42
    att = attribute(small_model, sae, TOKS[0], target, position=-1, n_top=8, n_total=4)
    spliced = SplicedModel(small_model, [sae], use_error_term=True)
    acts_name = f"{HOOK}.hook_sae_acts_post"
    clean_logits, cache = spliced.run_with_cache(TOKS, [acts_name])
    assert att.logit == pytest.approx(float(clean_logits[0, -1, target]), rel=1e-5)
    acts = np.asarray(cache[acts_name][0])
    assert len(att.effects) > 0
    gradients = [abs(e.gradient) for e in att.effects]
    assert gradients == sorted(gradients, reverse=True)
    for e in att.effects[:4]:
        assert e.activation == pytest.approx(float(acts[e.position, e.latent]), rel=1e-5)
        kill = lambda a, p=e.position, i=e.latent: a.at[0, p, i].set(0.0)
        ablated = spliced.run_with_hooks(TOKS, {acts_name: kill})[0, -1, target]
        assert e.total == pytest.approx(float(clean_logits[0, -1, target] - ablated), rel=1e-4, abs=1e-5)
    # the gradient column by finite differences of the activation for the top candidate
    top = att.effects[0]
    eps = 2e-2  # central differences: float32 logits of real weights need a step well above their rounding
    bumped = lambda h: float(
        spliced.run_with_hooks(TOKS, {acts_name: lambda a: a.at[0, top.position, top.latent].add(h)})[0, -1, target]
    )
    fd = (bumped(eps) - bumped(-eps)) / (2 * eps)
    assert top.gradient == pytest.approx(top.activation * fd, rel=2e-2, abs=1e-4)
    at_target = [e for e in att.effects if e.position == att.position]
    assert all(np.isfinite(e.direct) for e in at_target)
    assert all(np.isnan(e.direct) for e in att.effects if e.position != att.position)


def test_direct_effect_is_the_decoder_row_through_the_unembedding(small_model: Model, sae) -> None:
    from saelab.models.transformer import unembed

    target = 42
    att = attribute(small_model, sae, TOKS[0], target, n_top=48, n_total=0)
    e = next(e for e in att.effects if e.position == att.position)
    final = f"blocks.{small_model.cfg.n_layers - 1}.hook_resid_post"
    _, cache = small_model.run_with_cache(TOKS, [final])
    x = cache[final][0, att.position].astype(jnp.float64 if jax.config.x64_enabled else jnp.float32)
    f = lambda v: float(unembed(small_model.params, small_model.cfg, v[None, None])[0, 0, target])
    eps = 1e-2
    w = sae.params.W_dec[e.latent]
    fd = (f(x + eps * w) - f(x - eps * w)) / (2 * eps)
    assert e.direct == pytest.approx(e.activation * fd, rel=2e-2, abs=1e-4)
