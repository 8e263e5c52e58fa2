"""SAEs spliced at attn.hook_z: all heads concatenated, or one head (`hook_head_index`) replaced alone."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.models import Model
from saelab.sae import LoadedSAE, ReLUConfig, SAEParams
from saelab.spliced import SplicedModel

HOOK = "blocks.1.attn.hook_z"


def _zero_sae(d: int, meta: dict) -> LoadedSAE:
    z = lambda *s: jnp.zeros(s, jnp.float32)
    cfg = ReLUConfig(d_in=d, d_sae=8)
    return LoadedSAE(SAEParams(z(d, 8), z(8), z(8, d), z(d), None), cfg, meta)


def test_one_head_sae_replaces_that_head_only(small_model: Model, tokens: np.ndarray) -> None:
    head, d_head = 2, small_model.cfg.d_head
    spliced = SplicedModel(small_model, [_zero_sae(d_head, {"hook_name": HOOK, "hook_head_index": head})])
    logits, cache = spliced.run_with_cache(tokens, [f"{HOOK}.hook_sae_input"])
    assert cache[f"{HOOK}.hook_sae_input"].shape == (*tokens.shape, d_head)
    want = small_model.run_with_hooks(tokens, {HOOK: lambda z: z.at[:, 1:, head].set(0.0)})
    np.testing.assert_allclose(np.asarray(logits), np.asarray(want), rtol=1e-5, atol=1e-5)
    every = SplicedModel(small_model, [_zero_sae(small_model.cfg.n_heads * d_head, {"hook_name": HOOK})])
    all_zero = small_model.run_with_hooks(tokens, {HOOK: lambda z: z.at[:, 1:].set(0.0)})
    np.testing.assert_allclose(np.asarray(every.run_with_hooks(tokens, {})), np.asarray(all_zero), atol=1e-5)
    assert np.abs(np.asarray(all_zero) - np.asarray(want)).max() > 1e-3


def test_head_index_outside_hook_z_or_the_heads_is_refused(small_model: Model) -> None:
    with pytest.raises(ValueError, match="out of range"):
        SplicedModel(small_model, [_zero_sae(64, {"hook_name": HOOK, "hook_head_index": 9})])
    with pytest.raises(ValueError, match="only defined at attn.hook_z"):
        SplicedModel(small_model, [_zero_sae(576, {"hook_name": "blocks.1.hook_mlp_out", "hook_head_index": 0})])
