"""What a notebook user repeats compiles once: a loop of latent ablations written with lambdas on a spliced
model, and steering with other latents and strengths (one compiled loop for the clean and the steered row)."""

from __future__ import annotations

import numpy as np

from saelab.spliced import SplicedModel
from saelab.spliced.steer import steer
from tests.models.test_inputs_and_hook_fns import Compiles
from tests.spliced.conftest import HOOK

ACTS = f"{HOOK}.hook_sae_acts_post"


def test_eight_latent_ablations_with_lambdas_compile_once(small_model, sae) -> None:
    spliced = SplicedModel(small_model, [sae], use_error_term=True)
    toks = small_model.to_tokens(["The quick brown fox", "jumps"])
    clean = np.asarray(spliced.run_with_hooks(toks))
    outs = {}
    with Compiles() as c:
        for i in range(8):
            outs[i] = np.asarray(spliced.run_with_hooks(toks, fwd_hooks=[(ACTS, lambda a, hook: a.at[..., i].set(0))]))  # noqa: B023
    assert c.programs() == 1
    for i in (0, 5):  # each ablation is its own: the latent's decoder row times its activation, removed
        _, cache = spliced.run_with_cache(toks, [ACTS, f"{HOOK}.hook_sae_output"])
        _, edited = spliced.run_with_cache(
            toks, [f"{HOOK}.hook_sae_output"], fwd_hooks=[(ACTS, lambda a, i=i: a.at[..., i].set(0))]
        )
        moved = np.asarray(edited[f"{HOOK}.hook_sae_output"] - cache[f"{HOOK}.hook_sae_output"])[:, 1:]
        hand = -np.asarray(cache[ACTS])[:, 1:, i, None] * np.asarray(sae.params.W_dec[i])
        np.testing.assert_allclose(moved, hand, rtol=1e-4, atol=1e-4)
    assert any(not np.allclose(outs[i], clean) for i in outs)


def test_steer_compiles_one_loop_for_both_rows_and_reuses_it(small_model, sae) -> None:
    with Compiles() as c:
        first = steer(small_model, sae, "The quick brown fox", 3, 30.0, max_new_tokens=6)
        steer(small_model, sae, "The lazy dog", [5, 7], [10.0, -4.0], max_new_tokens=6)
        steer(small_model, sae, "The quick brown fox", 3, clamp=8.0, max_new_tokens=6)
        steer(small_model, sae, "A cat", 11, clamp=2.0, max_new_tokens=6)
    assert c.programs() == 2  # one for adding, one for clamping (the spliced model), each compiled once
    assert first.clean == small_model.generate("The quick brown fox", 6)  # the clean row is the plain model's
    zero = steer(small_model, sae, "The quick brown fox", 3, 0.0, max_new_tokens=6)
    assert zero.clean == zero.steered
