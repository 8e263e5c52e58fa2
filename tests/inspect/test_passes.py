"""The batched passes against brute force over the whole (small) store: top contexts, their window
activations, counts, max, mean, histograms and interval examples, for TopK and ReLU SAEs and a subset
of latents."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.inspect.collect import collect
from saelab.sae import encode, load_sae
from saelab.store import ActivationStore

from .inspect_helpers import CONTEXT, HOOK, write_sae

LEFT, RIGHT = 5, 2


def brute(sae, store):
    """Dense codes of every token (n, d_sae) and the mask of tokens counted (not BOS)."""
    x = np.asarray(store.activations(HOOK), np.float32)
    codes = np.asarray(encode(sae.params, jnp.asarray(x), sae.cfg))
    return codes, np.asarray(store.pos) != 0


def windows(store, codes, token, latent):
    """Brute-force activations of `latent` on the tokens around `token` (same window and document)."""
    pos, doc = np.asarray(store.pos), np.asarray(store.doc)
    out = np.zeros(LEFT + 1 + RIGHT, np.float32)
    for j, t in enumerate(range(token - LEFT, token + RIGHT + 1)):
        if 0 <= t < len(pos) and t - pos[t] == token - pos[token] and doc[t] == doc[token]:
            out[j] = codes[t, latent]
    return out


def _collect_all(sae, store, **kw):
    """`collect` over the whole synthetic store with the windows (LEFT, RIGHT) and 48 active latents kept."""
    return collect(sae, store, HOOK, tokens=10**6, left=LEFT, right=RIGHT, max_active=48, progress=False, **kw)


@pytest.mark.parametrize(("architecture", "batch_windows"), [("topk", 3), ("topk", 40), ("relu", 4)])
def test_top_contexts_equal_brute_force(synthetic, tmp_path, architecture, batch_windows) -> None:
    sae = load_sae(write_sae(tmp_path / "sae", architecture))
    store = ActivationStore(synthetic)
    k = 6
    s = _collect_all(sae, store, batch_windows=batch_windows, top_k=k)
    codes, counted = brute(sae, store)
    on = (codes > 0) & counted[:, None]
    assert s.n_tokens == counted.sum() and s.n_over == 0
    assert 0 < on.sum(1).mean() < sae.cfg.d_sae / 2  # sparse, as a real SAE
    np.testing.assert_array_equal(s.count, on.sum(0))
    np.testing.assert_allclose(s.max, np.where(on, codes, 0).max(0), rtol=1e-6)
    np.testing.assert_allclose(s.mean, np.where(on, codes, 0).sum(0) / np.maximum(on.sum(0), 1), rtol=1e-4)
    checked = 0
    for lat in range(sae.cfg.d_sae):
        fired = np.flatnonzero(on[:, lat])
        want = fired[np.argsort(-codes[fired, lat], kind="stable")][:k]
        got = s.top.token[lat][s.top.token[lat] >= 0]
        np.testing.assert_array_equal(got, want, err_msg=f"latent {lat}")
        np.testing.assert_allclose(s.top.value[lat, : len(want)], codes[want, lat], rtol=1e-5)
        for j, t in enumerate(want):
            np.testing.assert_allclose(s.top.acts[lat, j], windows(store, codes, t, lat), rtol=1e-5, atol=1e-6)
            ids = s.top.ids[lat, j]
            assert ids[LEFT] == store.tokens[t]
            shown = np.flatnonzero(ids >= 0) - LEFT + t
            np.testing.assert_array_equal(ids[ids >= 0], np.asarray(store.tokens)[shown])
        checked += len(want)
    assert checked > sae.cfg.d_sae * 3


def test_histograms_and_interval_examples(synthetic, tmp_path) -> None:
    sae = load_sae(write_sae(tmp_path / "sae", "relu"))
    store = ActivationStore(synthetic)
    latents = np.array([3, 0, 17, 40])
    nq, per, bins = 4, 3, 10
    s = _collect_all(sae, store, batch_windows=5, latents=latents, quantiles=nq, per_quantile=per, bins=bins)
    codes, counted = brute(sae, store)
    for r, lat in enumerate(latents):
        a = codes[counted & (codes[:, lat] > 0), lat]
        mx = a.max()
        want = np.bincount(np.clip(np.ceil(a / mx * bins).astype(int) - 1, 0, bins - 1), minlength=bins)
        assert abs(s.hist[lat] - want).sum() <= 2  # float rounding at bin edges only
        assert s.hist[lat].sum() == len(a)
        assert s.top.token.shape == (4, 20)
        for q in range(nq):
            cols = slice(q * per, (q + 1) * per)
            tok = s.intervals.token[r, cols]
            tok = tok[tok >= 0]
            in_interval = (a > mx * q / nq) & (a <= mx * (q + 1) / nq)
            assert len(tok) == min(per, in_interval.sum())  # full wherever the interval has enough tokens
            vals = codes[tok, lat]
            np.testing.assert_allclose(s.intervals.value[r, cols][: len(tok)], vals, rtol=1e-5)
            assert ((vals > mx * q / nq * (1 - 1e-5)) & (vals <= mx * (q + 1) / nq * (1 + 1e-5))).all()
            for j, t in enumerate(tok):
                np.testing.assert_allclose(s.intervals.acts[r, q * per + j], windows(store, codes, t, lat), atol=1e-5)


def test_tokens_limit_whole_windows_and_bad_latents(synthetic, tmp_path) -> None:
    sae = load_sae(write_sae(tmp_path / "sae"))
    store = ActivationStore(synthetic)
    s = collect(sae, store, HOOK, tokens=5 * CONTEXT + 3, progress=False)
    assert s.n_tokens == 5 * (CONTEXT - 1)  # 5 whole windows, BOS excluded
    assert s.top.token.max() < 5 * CONTEXT
    relu = load_sae(write_sae(tmp_path / "relu", "relu"))
    codes, counted = brute(relu, store)
    s = collect(relu, store, HOOK, tokens=10**6, max_active=3, progress=False)
    assert s.n_over == ((codes > 0).sum(1)[counted] > 3).sum() > 0  # tokens whose smallest latents were dropped
    with pytest.raises(ValueError, match="latents must lie in"):
        collect(sae, store, HOOK, tokens=100, latents=np.array([48]), progress=False)


def test_second_pass_same_with_and_without_kept_codes_and_moments(synthetic, tmp_path) -> None:
    sae = load_sae(write_sae(tmp_path / "sae"))
    store = ActivationStore(synthetic)
    kw = dict(tokens=10**6, batch_windows=6, quantiles=3, per_quantile=2, left=LEFT, right=RIGHT, progress=False)
    kept = collect(sae, store, HOOK, moments=True, **kw)
    again = collect(sae, store, HOOK, cache_bytes=0, **kw)  # the second pass encodes again
    np.testing.assert_array_equal(kept.hist, again.hist)
    np.testing.assert_array_equal(kept.intervals.token, again.intervals.token)
    np.testing.assert_allclose(kept.intervals.acts, again.intervals.acts, rtol=1e-6)
    assert again.moments is None
    x = np.asarray(store.activations(HOOK), np.float64)[np.asarray(store.pos) != 0]
    assert kept.moments.n == len(x)
    np.testing.assert_allclose(kept.moments.sum_x, x.sum(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(kept.moments.sum_xx, x.T @ x, rtol=1e-4, atol=1e-2)
