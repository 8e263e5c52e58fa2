"""A bfloat16 harvest (`saelab harvest --model-dtype bfloat16`): the model computes in bfloat16 and the store
holds that forward's activations; they stay close to the float32 harvest's without being equal to them."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.harvest import HarvestConfig, run
from saelab.models import Model
from saelab.store import ActivationStore

HOOK = "blocks.3.hook_resid_post"


@pytest.fixture(scope="module")
def bf16_model() -> Model:
    return Model.load("smollm2-135m", dtype="bfloat16")


def test_bfloat16_harvest_is_the_bfloat16_forward(bf16_model: Model, tmp_path) -> None:
    """Stored values (float32 storage) equal a direct bfloat16 forward of the stored tokens to bfloat16
    rounding (rtol 1e-2: XLA may fuse the batched forward differently), and differ from the float32 forward by
    a mean relative difference between 1e-4 and 5e-2 (bfloat16 keeps 8 bits of mantissa)."""
    cfg = HarvestConfig(hooks=[HOOK], tokens=512, batch=2, model_dtype="bfloat16", dtype="float32", out=tmp_path / "s")
    store = ActivationStore(run(cfg, model=bf16_model, progress=False))
    assert store.meta["model_dtype"] == "bfloat16"
    tokens = jnp.asarray(np.asarray(store.tokens).reshape(-1, 128))
    got = np.asarray(store.activations(HOOK), np.float32)  # (512, 576)
    want = np.asarray(bf16_model.run_with_cache(tokens, [HOOK])[1][HOOK], np.float32).reshape(got.shape)
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2 * np.abs(want).max())
    f32 = np.asarray(Model.load("smollm2-135m").run_with_cache(tokens, [HOOK])[1][HOOK], np.float32)
    rel = np.linalg.norm(got - f32.reshape(got.shape), axis=1) / np.linalg.norm(f32.reshape(got.shape), axis=1)
    assert 1e-4 < rel.mean() < 5e-2, rel.mean()


def test_a_model_of_another_dtype_is_refused(bf16_model: Model, tmp_path) -> None:
    cfg = HarvestConfig(hooks=[HOOK], tokens=128, batch=1, out=tmp_path / "s")  # model_dtype float32
    with pytest.raises(ValueError, match="computes in bfloat16 but model_dtype is 'float32'"):
        run(cfg, model=bf16_model, progress=False)
