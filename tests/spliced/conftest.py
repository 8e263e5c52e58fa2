"""SmolLM2 cut to two blocks and a random ReLU SAE on its blocks.1.hook_resid_post."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.models import Model
from saelab.sae import LoadedSAE, ReLUConfig, SAEParams
from tests.models.small import sliced_smollm2

HOOK = "blocks.1.hook_resid_post"
D_SAE = 48


@pytest.fixture(scope="session")
def small_model() -> Model:
    """SmolLM2's first two blocks (real weights, no torch needed)."""
    return sliced_smollm2(2)


@pytest.fixture(scope="session")
def sae(small_model: Model) -> LoadedSAE:
    d = small_model.cfg.d_model
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    w_enc = jax.random.normal(k1, (d, D_SAE)) / np.sqrt(d)
    w_dec = jax.random.normal(k2, (D_SAE, d)) / np.sqrt(d)
    b_enc = 0.1 * jax.random.normal(k3, (D_SAE,))
    cfg = ReLUConfig(d_in=d, d_sae=D_SAE)
    params = SAEParams(w_enc, b_enc, w_dec, jnp.zeros((d,)), None)
    return LoadedSAE(params, cfg, {"hook_name": HOOK})


@pytest.fixture(scope="session")
def tokens() -> np.ndarray:
    rng = np.random.default_rng(1)
    toks = rng.integers(1, 97, size=(2, 9)).astype(np.int32)
    toks[:, 0] = 1
    return toks
