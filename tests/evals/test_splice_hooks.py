"""The eval's splice at every hook an SAE can read (attn.hook_z, one head of it, mlp.hook_post, hook_attn_out,
hook_mlp_out) on SmolLM2 cut to two blocks, against hand-spliced forwards."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.evals import metrics, splice
from saelab.models import HookContext, Model, forward
from saelab.models.hook_views import hook_shape, hook_width, row_view, sae_input, with_sae_output
from saelab.sae import ReLUConfig, SAEConfig, SAEParams, decode, encode
from tests.models.small import sliced_smollm2

HOOKS = [
    ("blocks.1.attn.hook_z", None),
    ("blocks.1.attn.hook_z", 3),
    ("blocks.0.mlp.hook_post", None),
    ("blocks.1.hook_attn_out", None),
    ("blocks.0.hook_mlp_out", None),
]


@pytest.fixture(scope="module")
def model() -> Model:
    return sliced_smollm2(2)


@pytest.fixture(scope="module")
def tokens(model: Model) -> jax.Array:
    toks, mask = model.to_tokens(
        ["Return the number of items in a container, counting nested lists once.", "Open the file and read it."]
    )
    n = int(mask.sum(1).min())
    return jnp.asarray(toks[:, -n:])


def _sae(w_enc: jax.Array, w_dec: jax.Array) -> tuple[SAEParams, SAEConfig]:
    d, n = w_enc.shape
    cfg = ReLUConfig(d_in=d, d_sae=n)
    zeros = lambda k: jnp.zeros((k,), jnp.float32)
    return SAEParams(w_enc, zeros(n), w_dec, zeros(d), None), cfg


def _identity(d: int):
    eye = jnp.eye(d, dtype=jnp.float32)
    return _sae(jnp.concatenate([eye, -eye], 1), jnp.concatenate([eye, -eye], 0))


@functools.cache
def _splice_fn(model_cfg, hook: str, head, sae_cfg: SAEConfig):
    """One compiled splice per hook and SAE shape (the identity and the zero SAE share it)."""
    enc = lambda p, x: encode(p, x, sae_cfg)
    return splice.make_splice_fn(model_cfg, hook, enc, lambda p, c: decode(p, c), head_index=head)


def _splice(model: Model, hook: str, head, sae, tokens, act_mean):
    params, cfg = sae
    s, r = _splice_fn(model.cfg, hook, head, cfg)(model.params, params, tokens, act_mean)
    ce = splice.finish(splice.SpliceSums(*(np.asarray(v, np.float64) for v in s)))
    return ce, metrics.finish(metrics.add(None, r))


def _hand_ce(model: Model, tokens, hook: str, fn) -> float:
    """Mean next-token loss with `fn` (the hook's own tensor -> same) applied at `hook`."""
    logits = forward(model.params, model.cfg, tokens, None, HookContext(hooks={hook: fn})).logits
    logp = np.asarray(jax.nn.log_softmax(logits[:, :-1]), np.float64)
    return float(-np.mean(np.take_along_axis(logp, np.asarray(tokens)[:, 1:, None], axis=-1)))


def test_hook_widths_follow_the_activation_shapes(model: Model, tokens) -> None:
    c = model.cfg
    assert hook_width(c, "blocks.1.attn.hook_z") == c.n_heads * c.d_head
    assert hook_width(c, "blocks.1.attn.hook_z", 3) == c.d_head
    assert hook_width(c, "blocks.0.mlp.hook_post") == c.d_mlp != c.d_model
    assert hook_width(c, "blocks.1.hook_attn_out") == hook_width(c, "blocks.0.hook_mlp_out") == c.d_model
    _, cache = model.run_with_cache(tokens, [h for h, _ in HOOKS])
    for hook, head in HOOKS:
        x = cache[hook]
        assert x.shape[2:] == hook_shape(c, hook)
        view = sae_input(x, head)
        assert view.shape == (*tokens.shape, hook_width(c, hook, head))
        np.testing.assert_array_equal(np.asarray(with_sae_output(x, view, head)), np.asarray(x))
    z = np.asarray(cache["blocks.1.attn.hook_z"])  # (b, t, heads, d_head): heads concatenated, head-major
    np.testing.assert_array_equal(np.asarray(sae_input(cache["blocks.1.attn.hook_z"])), z.reshape(*z.shape[:2], -1))
    np.testing.assert_array_equal(np.asarray(sae_input(cache["blocks.1.attn.hook_z"], 3)), z[:, :, 3])
    row = np.arange(c.n_heads * c.d_head, dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(row_view(c, "blocks.1.attn.hook_z", row, 3)), row[3 * 64 : 4 * 64])


def test_bad_hooks_and_head_indices_are_refused(model: Model) -> None:
    c = model.cfg
    with pytest.raises(ValueError, match="not an SAE input"):
        hook_width(c, "blocks.1.attn.hook_result")
    with pytest.raises(ValueError, match="only defined at attn.hook_z"):
        hook_width(c, "blocks.1.hook_mlp_out", 0)
    with pytest.raises(ValueError, match="out of range"):
        splice.make_splice_fn(c, "blocks.1.attn.hook_z", None, None, head_index=c.n_heads)


@pytest.mark.parametrize(("hook", "head"), HOOKS)
def test_identity_sae_recovers_everything_at_every_hook(model: Model, tokens, hook: str, head) -> None:
    d = hook_width(model.cfg, hook, head)
    ce, rec = _splice(model, hook, head, _identity(d), tokens, jnp.zeros((d,)))
    assert rec.explained_variance == pytest.approx(1.0, abs=1e-5)
    assert ce["ce_loss_sae"] == pytest.approx(ce["ce_loss_clean"], abs=1e-5)
    assert ce["kl_div"] == pytest.approx(0.0, abs=1e-5)
    assert abs(ce["ce_loss_zero_ablation"] - ce["ce_loss_clean"]) > 1e-3  # the ablation does matter


@pytest.mark.parametrize(("hook", "head"), HOOKS)
def test_zero_and_mean_ablation_match_hand_spliced_forwards(model: Model, tokens, hook: str, head) -> None:
    """The zero SAE equals zero ablation; both ablations equal a forward whose hook replaces positions 1.. of
    the SAE's view (only head `head` at hook_z with a head index) by zeros or by the given mean."""
    d = hook_width(model.cfg, hook, head)
    mean = jax.random.normal(jax.random.key(0), (d,)) * 0.1
    zero_sae = _sae(jnp.zeros((d, 2 * d)), jnp.zeros((2 * d, d)))  # the identity SAE's shape
    ce, rec = _splice(model, hook, head, zero_sae, tokens, mean)
    assert ce["ce_loss_sae"] == pytest.approx(ce["ce_loss_zero_ablation"], rel=1e-6)
    assert ce["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-6)
    assert rec.l0 == 0

    def replace(value):
        def fn(x):
            if x.ndim == 4 and head is not None:
                return x.at[:, 1:, head].set(jnp.broadcast_to(value, x[:, 1:, head].shape))
            flat = x.reshape(*x.shape[:2], -1)
            return flat.at[:, 1:].set(jnp.broadcast_to(value, flat[:, 1:].shape)).reshape(x.shape)

        return fn

    assert ce["ce_loss_zero_ablation"] == pytest.approx(_hand_ce(model, tokens, hook, replace(0.0)), rel=1e-5)
    assert ce["ce_loss_mean_ablation"] == pytest.approx(_hand_ce(model, tokens, hook, replace(mean)), rel=1e-5)


def test_one_head_splice_replaces_only_that_head(model: Model, tokens) -> None:
    hook = "blocks.1.attn.hook_z"
    d_head = model.cfg.d_head
    zero = lambda d: _sae(jnp.zeros((d, 2 * d)), jnp.zeros((2 * d, d)))
    one, _ = _splice(model, hook, 3, zero(d_head), tokens, jnp.zeros((d_head,)))
    other, _ = _splice(model, hook, 5, zero(d_head), tokens, jnp.zeros((d_head,)))
    every, _ = _splice(model, hook, None, zero(hook_width(model.cfg, hook)), tokens, jnp.zeros((576,)))
    assert abs(one["ce_loss_sae"] - other["ce_loss_sae"]) > 1e-4  # which head matters
    # zeroing one head of nine hurts less than zeroing all of them
    assert one["ce_loss_sae"] - one["ce_loss_clean"] < every["ce_loss_sae"] - every["ce_loss_clean"]
