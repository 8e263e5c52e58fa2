"""Spliced models: error term exactness, agreement with the eval's splice, latent hooks and edits."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.evals import splice
from saelab.models import Model
from saelab.sae import decode, encode
from saelab.spliced import SplicedModel
from tests.spliced.conftest import D_SAE, HOOK

ACTS = HOOK + ".hook_sae_acts_post"


def test_error_term_gives_the_clean_logits(small_model: Model, sae, tokens) -> None:
    clean = small_model.run_with_hooks(tokens, {})
    spliced = SplicedModel(small_model, [sae], use_error_term=True).run_with_hooks(tokens, {})
    np.testing.assert_allclose(np.asarray(spliced), np.asarray(clean), rtol=1e-5, atol=1e-6)


def test_without_error_term_the_ce_equals_the_evals_splice(small_model: Model, sae, tokens) -> None:
    logits = SplicedModel(small_model, [sae]).run_with_hooks(tokens, {})
    lp = jax.nn.log_softmax(logits[:, :-1])
    ce = -float(jnp.take_along_axis(lp, jnp.asarray(tokens)[:, 1:, None], -1).mean())
    fn = splice.make_splice_fn(
        small_model.cfg, HOOK, partial(lambda p, x, c: encode(p, x, c), c=sae.cfg), lambda p, c: decode(p, c)
    )
    s, _ = fn(small_model.params, sae.params, jnp.asarray(tokens), jnp.zeros((small_model.cfg.d_model,)))
    ref = splice.finish(splice.SpliceSums(*(np.asarray(v, np.float64) for v in s)))
    assert ce == pytest.approx(ref["ce_loss_sae"], rel=1e-5)
    assert abs(ce - ref["ce_loss_clean"]) > 1e-3


def test_latent_hooks_appear_in_the_cache_with_their_shapes(small_model: Model, sae, tokens) -> None:
    spliced = SplicedModel(small_model, [sae], use_error_term=True)
    names = [n for n in spliced.hook_names() if n.startswith(HOOK + ".")]
    assert len(names) == 5
    _, cache = spliced.run_with_cache(tokens, names)
    b, t = tokens.shape
    d = small_model.cfg.d_model
    assert cache[ACTS].shape == (b, t, D_SAE)
    for n in names:
        if n != ACTS:
            assert cache[n].shape == (b, t, d), n
    x = cache[HOOK + ".hook_sae_input"]
    np.testing.assert_allclose(cache[HOOK + ".hook_sae_recons"] + cache[HOOK + ".hook_sae_error"], x, atol=1e-5)
    hand = encode(sae.params, x.reshape(-1, d), sae.cfg).reshape(b, t, D_SAE)
    # the spliced forward's dots run in oneDNN (models/compile_options.py), the hand encode's in XLA's default
    np.testing.assert_allclose(np.asarray(cache[ACTS]), np.asarray(hand), rtol=1e-5, atol=1e-5)


def test_ablating_a_latent_subtracts_its_contribution(small_model: Model, sae, tokens) -> None:
    spliced = SplicedModel(small_model, [sae], use_error_term=True)
    out_name, in_name = HOOK + ".hook_sae_output", HOOK + ".hook_sae_input"
    _, clean = spliced.run_with_cache(tokens, [ACTS, in_name])
    i = int(np.argmax(np.asarray(clean[ACTS][:, 1:]).sum((0, 1))))  # a latent that fires
    _, edited = spliced.run_with_cache(tokens, [out_name], hooks={ACTS: lambda a: a.at[..., i].set(0.0)})
    a_i = np.asarray(clean[ACTS][..., i])[..., None]
    hand = np.asarray(clean[in_name]) - a_i * np.asarray(sae.params.W_dec[i])
    np.testing.assert_allclose(np.asarray(edited[out_name])[:, 1:], hand[:, 1:], rtol=1e-5, atol=1e-5)
    assert np.abs(a_i[:, 1:]).max() > 0


def test_unknown_sae_hook_is_named(small_model: Model, sae, tokens) -> None:
    spliced = SplicedModel(small_model, [sae])
    with pytest.raises(ValueError, match="hook_sae_acts_post"):
        spliced.run_with_cache(tokens, ["blocks.1.hook_resid_post.hook_sae_latents"])
    with pytest.raises(ValueError, match="two SAEs"):
        SplicedModel(small_model, [sae, sae])


def test_spliced_generation_with_error_term_equals_the_clean_model(small_model: Model, sae) -> None:
    from saelab.models.generate import generate

    toks = np.asarray([[1, 5, 9, 13, 2, 7]], np.int32)
    mask = np.ones_like(toks)
    spliced = SplicedModel(small_model, [sae], use_error_term=True)
    ref = np.asarray(generate(small_model.params, small_model.cfg, toks, mask, 6).tokens)
    np.testing.assert_array_equal(np.asarray(spliced.generate_tokens(toks, mask, 6).tokens), ref)
    kill_all = {ACTS: jnp.zeros_like}
    ablated = np.asarray(SplicedModel(small_model, [sae]).generate_tokens(toks, mask, 6, hooks=kill_all).tokens)
    assert not np.array_equal(ablated, ref)
