"""The transcoder splice on SmolLM2 cut to two blocks: a "transcoder" that is the true MLP gives the clean CE,
one that outputs zero gives the zero-ablation CE, and the reconstruction sums compare with the MLP output."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.evals import splice
from saelab.evals.transcoder import check_hook_order, make_transcoder_splice_fn, transcoder_splice_fn
from saelab.models import Model
from saelab.sae import ReLUConfig, SAEParams
from tests.models.small import sliced_smollm2

LAYER = 1
HOOK_IN, HOOK_OUT = f"blocks.{LAYER}.ln2.hook_normalized", f"blocks.{LAYER}.hook_mlp_out"


@pytest.fixture(scope="module")
def small() -> Model:
    return sliced_smollm2(2)


@pytest.fixture(scope="module")
def tokens(small: Model) -> jax.Array:
    texts = ["Return the number of items in a container, counting nested lists once and only once."] * 2
    toks, mask = small.to_tokens(texts)
    return jnp.asarray(toks[:, -int(mask.sum(1).min()) :])


def _true_mlp(model: Model):
    """The block's own SwiGLU MLP as a (params, x (n, d)) -> (n, d) function: a perfect transcoder."""
    p = model.params.layers[LAYER].mlp
    return lambda _, h: (jax.nn.silu(h @ p.W_gate) * (h @ p.W_in)) @ p.W_out


def test_the_true_mlp_spliced_gives_the_clean_model(small: Model, tokens) -> None:
    codes = lambda _, h: jnp.ones((h.shape[0], 1))
    fn = make_transcoder_splice_fn(small.cfg, HOOK_IN, HOOK_OUT, _true_mlp(small), codes)
    mean = jnp.zeros((small.cfg.d_model,))
    s, r = fn(small.params, None, tokens, mean)
    out = splice.finish(s)
    np.testing.assert_allclose(out["ce_loss_sae"], out["ce_loss_clean"], rtol=1e-5)
    assert abs(out["kl_div"]) < 1e-5
    assert out["ce_loss_zero_ablation"] > out["ce_loss_clean"] + 0.01  # the MLP matters, so the check has teeth
    assert float(r.sse) < 1e-6 * float(r.sum_sq)  # reconstruction against the clean hook_mlp_out

    zero = lambda _, h: jnp.zeros_like(h)
    s0, _ = make_transcoder_splice_fn(small.cfg, HOOK_IN, HOOK_OUT, zero, codes)(small.params, None, tokens, mean)
    out0 = splice.finish(s0)
    np.testing.assert_allclose(out0["ce_loss_sae"], out0["ce_loss_zero_ablation"], rtol=1e-6)
    np.testing.assert_allclose(out0["ce_loss_recovered"], 0.0, atol=1e-6)


def test_a_transcoder_that_never_fires_with_a_zero_skip_is_the_zero_ablation(small: Model, tokens) -> None:
    """A skip-transcoder whose latents never fire is x @ W_skip + b_dec: with W_skip = 0 and b_dec = 0 it is
    the zero ablation; compiled through the saelab path (encode, decode, skip)."""
    d = small.cfg.d_model
    cfg = ReLUConfig(d_in=d, d_sae=8, d_out=d, skip=True)
    z = lambda *s: jnp.zeros(s, jnp.float32)
    params = SAEParams(z(d, 8), jnp.full((8,), -1.0), z(8, d), z(d), None, z(d, d))
    s, r = transcoder_splice_fn(small.cfg, HOOK_IN, HOOK_OUT, cfg)(small.params, params, tokens, z(d))
    out = splice.finish(s)
    np.testing.assert_allclose(out["ce_loss_sae"], out["ce_loss_zero_ablation"], rtol=1e-6)
    assert float(r.l0) == 0.0


def test_hooks_must_come_in_forward_order() -> None:
    with pytest.raises(ValueError, match="before its output hook"):
        check_hook_order(HOOK_OUT, HOOK_IN)
    check_hook_order("blocks.0.hook_resid_mid", "blocks.0.hook_mlp_out")
