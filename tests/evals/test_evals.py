"""Eval metrics against hand computations, and CE loss recovered by splicing at the SAE's own hook."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.evals import metrics, splice
from saelab.models import HookContext, Model, forward
from saelab.sae import ReLUConfig, SAEConfig, SAEParams, decode, encode

HOOK = "blocks.2.hook_resid_post"


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.load("smollm2-135m")


@pytest.fixture(scope="module")
def tokens(model: Model) -> jax.Array:
    texts = [
        "Return the number of items in a container, counting nested lists once.",
        "Open the file in binary mode and read it in chunks of the given size.",
    ]
    toks, mask = model.to_tokens(texts)
    n = int(mask.sum(1).min())
    return jnp.asarray(toks[:, -n:])  # left-padded: keep the common unpadded tail (starts at BOS for the shorter)


def _relu_sae(w_enc, w_dec, d: int) -> tuple[SAEParams, SAEConfig]:
    cfg = ReLUConfig(d_in=d, d_sae=w_enc.shape[1])
    z = lambda n: jnp.zeros((n,), jnp.float32)
    return SAEParams(w_enc, z(w_enc.shape[1]), w_dec, z(d), None), cfg


def identity_sae(d: int):
    """ReLU(x) - ReLU(-x) = x: W_enc = [I, -I], W_dec = [I; -I]."""
    eye = jnp.eye(d, dtype=jnp.float32)
    return _relu_sae(jnp.concatenate([eye, -eye], 1), jnp.concatenate([eye, -eye], 0), d)


def zero_sae(d: int):
    return _relu_sae(jnp.zeros((d, 8), jnp.float32), jnp.zeros((8, d), jnp.float32), d)


def _splice(model: Model, hook: str, sae, tokens, act_mean=None, shared_prefix: bool = True, **kw):
    params, cfg = sae
    fn = splice.make_splice_fn(
        model.cfg,
        hook,
        partial(lambda p, x, c: encode(p, x, c), c=cfg),
        lambda p, codes: decode(p, codes),
        shared_prefix=shared_prefix,
        **kw,
    )
    mean = jnp.zeros((model.cfg.d_model,)) if act_mean is None else act_mean
    s, r = fn(model.params, params, tokens, mean)
    return splice.finish(splice.SpliceSums(*(np.asarray(v, np.float64) for v in s))), metrics.finish(
        metrics.add(None, r)
    )


def test_identity_sae_recovers_everything(model: Model, tokens) -> None:
    ce, rec = _splice(model, HOOK, identity_sae(model.cfg.d_model), tokens)
    assert rec.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert rec.cosine == pytest.approx(1.0, abs=1e-6)
    assert ce["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert ce["kl_div"] == pytest.approx(0.0, abs=1e-5)
    assert ce["ce_loss_zero_ablation"] > ce["ce_loss_clean"] + 1.0


def test_zero_sae_recovers_nothing_and_matches_a_hand_spliced_forward(model: Model, tokens) -> None:
    ce, rec = _splice(model, HOOK, zero_sae(model.cfg.d_model), tokens)
    assert ce["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-6)
    assert ce["ce_loss_sae"] == pytest.approx(ce["ce_loss_zero_ablation"], rel=1e-6)
    assert rec.l0 == 0 and rec.dead_fraction == 1.0
    # the zero-ablated CE by hand: BOS kept, positions 1.. zeroed, next-token loss over positions 0..T-2
    zero_after_bos = lambda x: x.at[:, 1:].set(0.0)
    logits = forward(model.params, model.cfg, tokens, None, HookContext(hooks={HOOK: zero_after_bos})).logits
    logp = np.asarray(jax.nn.log_softmax(logits[:, :-1]), np.float64)
    t = np.asarray(tokens)
    hand = -np.mean(np.take_along_axis(logp, t[:, 1:, None], axis=-1))
    assert ce["ce_loss_zero_ablation"] == pytest.approx(hand, rel=1e-5)


def test_ce_recovered_depends_on_the_splice_hook(model: Model, tokens) -> None:
    d = model.cfg.d_model
    w = jax.random.normal(jax.random.key(0), (d, 64)) / np.sqrt(d)
    sae = _relu_sae(w, w.T, d)
    at = {h: _splice(model, h, sae, tokens)[0] for h in (HOOK, "blocks.5.hook_resid_post")}
    a, b = at.values()
    assert a["ce_loss_clean"] == pytest.approx(b["ce_loss_clean"], rel=1e-6)
    assert abs(a["ce_loss_sae"] - b["ce_loss_sae"]) > 1e-3
    assert abs(a["ce_loss_recovered"] - b["ce_loss_recovered"]) > 1e-3


def test_streaming_sums_match_numpy() -> None:
    r = np.random.default_rng(0)
    x = r.normal(size=(300, 16)).astype(np.float32) + 2.0
    x_hat = (x + 0.3 * r.normal(size=x.shape)).astype(np.float32)
    codes = np.maximum(r.normal(size=(300, 40)), 0).astype(np.float32) * (r.random((300, 40)) < 0.2)
    codes[:, 7] = 0
    s = None
    for i in range(0, 300, 100):  # three batches, summed on the host
        s = metrics.add(
            s,
            metrics.batch_sums(
                jnp.asarray(x[i : i + 100]), jnp.asarray(x_hat[i : i + 100]), jnp.asarray(codes[i : i + 100])
            ),
        )
    m = metrics.finish(s, dense_threshold=0.15)
    x64, h64 = x.astype(np.float64), x_hat.astype(np.float64)
    sse = np.sum((x64 - h64) ** 2)
    assert m.explained_variance == pytest.approx(1 - sse / np.sum((x64 - x64.mean(0)) ** 2), rel=1e-5)
    assert m.nmse == pytest.approx(sse / np.sum(x64**2), rel=1e-5)
    cos = np.sum(x64 * h64, 1) / np.linalg.norm(x64, axis=1) / np.linalg.norm(h64, axis=1)
    assert m.cosine == pytest.approx(cos.mean(), rel=1e-5)
    assert m.l0 == pytest.approx((codes != 0).sum(1).mean())
    assert m.l1 == pytest.approx(np.abs(codes).sum(1).mean(), rel=1e-5)
    assert m.shrinkage == pytest.approx(np.mean(np.linalg.norm(h64, axis=1) / np.linalg.norm(x64, axis=1)), rel=1e-5)
    density = (codes != 0).mean(0)
    assert m.dead_fraction == pytest.approx(np.mean(density == 0))
    assert m.dense_fraction == pytest.approx(np.mean(density > 0.15))


def test_max_decoder_cosine_matches_brute_force() -> None:
    w = np.random.default_rng(1).normal(size=(300, 12)).astype(np.float32)
    w[5] = 2 * w[9]
    got = metrics.max_decoder_cosine(jnp.asarray(w), block=128)
    u = w / np.linalg.norm(w, axis=1, keepdims=True)
    g = u @ u.T
    np.fill_diagonal(g, -np.inf)
    np.testing.assert_allclose(got, g.max(1), atol=1e-5)
    assert got[5] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("hook", ["blocks.3.hook_resid_post", "blocks.3.hook_resid_pre", "blocks.0.hook_resid_pre"])
def test_shared_prefix_splice_equals_four_full_forwards(model: Model, tokens, hook: str) -> None:
    """Running the blocks below a residual hook once (the fast path) changes no eval number."""
    d = model.cfg.d_model
    w = jax.random.normal(jax.random.key(1), (d, 64)) / np.sqrt(d)
    sae = _relu_sae(w, w.T, d)
    mean = jnp.full((d,), 0.05)
    assert splice.residual_split(hook) is not None
    fast, rec_fast = _splice(model, hook, sae, tokens, mean)
    slow, rec_slow = _splice(model, hook, sae, tokens, mean, shared_prefix=False)
    for key, value in slow.items():
        assert fast[key] == pytest.approx(value, rel=2e-5, abs=1e-6), key
    numeric = [k for k, v in rec_slow._asdict().items() if isinstance(v, float)]
    close = [getattr(rec_fast, k) == pytest.approx(getattr(rec_slow, k), rel=1e-6, abs=1e-9) for k in numeric]
    assert numeric and all(close)


def test_one_row_ablations_equal_four_full_forwards_and_need_a_shared_first_token(model: Model, tokens) -> None:
    """Rows that all start with BOS run the zero and mean ablations on one row; rows whose first tokens differ
    take the every-row path. Both give the numbers of four full forwards."""
    d = model.cfg.d_model
    w = jax.random.normal(jax.random.key(2), (d, 64)) / np.sqrt(d)
    params, cfg = _relu_sae(w, w.T, d)
    enc, dec = partial(lambda p, x, c: encode(p, x, c), c=cfg), lambda p, codes: decode(p, codes)
    fn = splice.make_splice_fn(model.cfg, HOOK, enc, dec)
    full = splice.make_splice_fn(model.cfg, HOOK, enc, dec, shared_prefix=False)
    mean = jnp.full((d,), 0.05)
    run = lambda f, t: splice.finish(
        splice.SpliceSums(*(np.asarray(v, np.float64) for v in f(model.params, params, t, mean)[0]))
    )
    bos_first = tokens.at[:, 0].set(model.bos_id)
    assert tokens[0, 0] != tokens[1, 0]
    for toks in (bos_first, tokens):
        got, want = run(fn, toks), run(full, toks)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=2e-5, abs=1e-6), key
    # one row cannot stand for rows with other first tokens: the ablated CE depends on it
    first_row_only = tokens.at[1:, 0].set(tokens[0, 0])
    assert run(fn, first_row_only)["ce_loss_zero_ablation"] != pytest.approx(
        run(full, tokens)["ce_loss_zero_ablation"], rel=1e-4
    )
    assert got["ce_loss_zero_ablation"] != pytest.approx(got["ce_loss_mean_ablation"], rel=1e-3)


def test_residual_split_only_at_residual_hooks() -> None:
    assert splice.residual_split("blocks.6.hook_resid_post") == 7
    assert splice.residual_split("blocks.6.hook_resid_pre") == 6
    assert splice.residual_split("blocks.6.hook_mlp_out") is None
    assert splice.residual_split("blocks.6.attn.hook_z") is None
