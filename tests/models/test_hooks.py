"""Hook points and interventions on SmolLM2: caching, hooks, early stopping, errors, jit/vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.models import HookContext, Model, forward


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.load("smollm2-135m")


@pytest.fixture(scope="module")
def tokens(model: Model) -> np.ndarray:
    toks, _ = model.to_tokens(["When Mary and John went to the store, John gave a drink to"])
    return toks


def test_identity_hook_leaves_logits_unchanged(model: Model, tokens) -> None:
    clean, _ = model.run_with_cache(tokens, [])
    identity = {"blocks.3.hook_resid_post": lambda x: x, "blocks.5.attn.hook_z": lambda z: z}
    hooked = model.run_with_hooks(tokens, identity)
    np.testing.assert_allclose(np.asarray(hooked), np.asarray(clean), rtol=0, atol=1e-5)


def test_zero_ablating_one_head_changes_logits(model: Model, tokens) -> None:
    clean, _ = model.run_with_cache(tokens, [])
    ablated = model.run_with_hooks(tokens, {"blocks.2.attn.hook_z": lambda z: z.at[:, :, 4].set(0.0)})
    assert np.abs(np.asarray(ablated) - np.asarray(clean)).max() > 1e-2


def test_stop_at_layer_returns_same_activations(model: Model, tokens) -> None:
    names = ["blocks.1.hook_resid_post", "blocks.4.hook_mlp_out", "blocks.4.attn.hook_z"]
    full_logits, full = model.run_with_cache(tokens, names)
    stopped_logits, part = model.run_with_cache(tokens, names, stop_at_layer=5)
    auto_logits, auto = model.run_with_cache(tokens, names, stop_at_layer="auto")
    assert full_logits is not None and stopped_logits is None and auto_logits is None
    for n in names:
        np.testing.assert_array_equal(np.asarray(part[n]), np.asarray(full[n]))
        np.testing.assert_array_equal(np.asarray(auto[n]), np.asarray(full[n]))
    with pytest.raises(ValueError, match="would skip"):
        model.run_with_cache(tokens, names, stop_at_layer=3)


def test_hook_shapes_and_head_results_sum_to_attn_out(model: Model, tokens) -> None:
    names = [
        f"blocks.2.{s}"
        for s in (
            "attn.hook_z",
            "attn.hook_result",
            "hook_attn_out",
            "mlp.hook_post",
            "hook_resid_pre",
            "hook_resid_mid",
        )
    ]
    _, c = model.run_with_cache(tokens, names)
    b, s = tokens.shape
    cfg = model.cfg
    assert c["blocks.2.attn.hook_z"].shape == (b, s, cfg.n_heads, cfg.d_head)
    assert c["blocks.2.attn.hook_result"].shape == (b, s, cfg.n_heads, cfg.d_model)
    assert c["blocks.2.mlp.hook_post"].shape == (b, s, cfg.d_mlp)
    np.testing.assert_allclose(
        np.asarray(c["blocks.2.attn.hook_result"].sum(2)), np.asarray(c["blocks.2.hook_attn_out"]), atol=1e-4
    )
    np.testing.assert_allclose(
        np.asarray(c["blocks.2.hook_resid_pre"] + c["blocks.2.hook_attn_out"]),
        np.asarray(c["blocks.2.hook_resid_mid"]),
        atol=1e-5,
    )


def test_unknown_hook_name_lists_valid_ones(model: Model, tokens) -> None:
    with pytest.raises(ValueError, match="valid names are.*hook_resid_post"):
        model.run_with_hooks(tokens, {"blocks.2.hook_resid_bogus": lambda x: x})
    with pytest.raises(ValueError, match="0..29"):
        model.run_with_cache(tokens, ["blocks.30.hook_resid_post"])


def test_patching_sweep_vmaps_under_jit(model: Model, tokens) -> None:
    """Zero each of the heads of layer 2 in one vmapped, jitted call; equals the one-at-a-time runs."""

    def run_ablating(params, head):
        hook = lambda z: z * (jnp.arange(z.shape[2]) != head)[None, None, :, None]
        ctx = HookContext(hooks={"blocks.2.attn.hook_z": hook})
        return forward(params, model.cfg, tokens, None, ctx).logits[:, -1]

    sweep = jax.jit(jax.vmap(run_ablating, in_axes=(None, 0)))(model.params, jnp.arange(3))
    one = model.run_with_hooks(tokens, {"blocks.2.attn.hook_z": lambda z: z.at[:, :, 1].set(0.0)})[:, -1]
    np.testing.assert_allclose(np.asarray(sweep[1]), np.asarray(one), atol=1e-4)
