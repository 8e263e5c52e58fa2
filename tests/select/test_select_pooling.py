"""Token pooling (mean, max, mean-skip) and latent weighting (idf, BM25 saturation) against NumPy, on arrays and
through the embedder and the cached scorer."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from saelab.sae import encode, load_sae
from saelab.select.cache import EmbeddingCache
from saelab.select.embed import ModelEmbedder, pool_tokens
from saelab.select.scoring import score_cached
from saelab.select.weighting import latent_stats, weigh

HOOK = "blocks.1.hook_resid_post"


def test_pool_tokens_by_hand():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 4)).astype(np.float32)  # (batch, seq, d)
    mask = np.array([[0, 1, 1, 1, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], np.int32)  # BOS off, padding off
    got = {p: np.asarray(pool_tokens(jnp.asarray(x), jnp.asarray(mask), p, 1)) for p in ("mean", "max", "mean-skip")}
    np.testing.assert_allclose(got["mean"][0], x[0, 1:4].mean(0), rtol=1e-6)
    np.testing.assert_allclose(got["max"][0], x[0, 1:4].max(0), rtol=1e-6)
    np.testing.assert_allclose(got["mean-skip"][0], x[0, 2:4].mean(0), rtol=1e-6)  # first content token out
    np.testing.assert_allclose(got["mean-skip"][1], x[1, 1], rtol=1e-6)  # one token: kept, not emptied
    for p in got:
        np.testing.assert_array_equal(got[p][2], 0.0)  # no token: zero, never -inf or NaN
    two = np.asarray(pool_tokens(jnp.asarray(x), jnp.asarray(mask), "mean-skip", 2))
    np.testing.assert_allclose(two[0], x[0, 3], rtol=1e-6)


@pytest.mark.parametrize("pooling", ["max", "mean-skip"])
def test_embedder_pools_sae_codes_like_numpy(tiny_model, tiny_sae, pooling):
    sae = load_sae(tiny_sae)
    text = "set a timer for five minutes"
    toks, mask = tiny_model.to_tokens([text])
    _, cache = tiny_model.run_with_cache(toks, [HOOK], pad_mask=mask)
    codes = np.asarray(encode(sae.params, cache[HOOK][0], sae.cfg))[1:]  # (content tokens, d_sae), BOS out
    want = codes.max(0) if pooling == "max" else codes[1:].mean(0)
    emb = ModelEmbedder(tiny_model, HOOK, "sae", sae, pooling=pooling, skip_tokens=1)
    np.testing.assert_allclose(emb([text]).toarray()[0], want, rtol=1e-4, atol=1e-5)


def _np_weigh(x, pool, how, k1=1.2, b=0.75):
    n, df = len(pool), (pool > 0).sum(0)
    idf = np.log((n + 1) / (df + 1))
    if how == "idf":
        return x * idf
    scale = np.where(df > 0, pool.sum(0) / np.maximum(df, 1), 1.0)
    avglen = (pool / scale).sum(1).mean()
    y = x / scale
    norm = k1 * (1 - b + b * y.sum(1, keepdims=True) / avglen)
    return idf * y * (k1 + 1) / (y + norm)


def _codes(rng, n, d):
    return (rng.random((n, d)) * 3 * (rng.random((n, d)) < 0.3)).astype(np.float32)


def _jaccard(a, b):
    return np.minimum(a, b).sum(-1) / np.maximum(a, b).sum(-1)


def _cache(root, pool, key):
    """An embedding cache holding `pool` (n, width) as CSR chunks of 8 rows."""
    cache = EmbeddingCache(root, {"test": key})
    cache.start()
    for s in range(0, len(pool), 8):
        cache.write(sp.csr_matrix(pool[s : s + 8]))
    cache.finish({})
    return cache


@pytest.mark.parametrize("how", ["idf", "bm25"])
def test_weighting_matches_numpy(how):
    rng = np.random.default_rng(1)
    pool = _codes(rng, 20, 12)
    pool[:, 11] = 0.0  # a latent that never fires
    parts = [sp.csr_matrix(pool[:7]), sp.csr_matrix(pool[7:])]
    stats = latent_stats(lambda: iter(parts))
    np.testing.assert_allclose(weigh(sp.csr_matrix(pool), stats, how).toarray(), _np_weigh(pool, pool, how), rtol=1e-5)
    targets = _codes(rng, 3, 12)
    np.testing.assert_allclose(weigh(targets, stats, how), _np_weigh(targets, pool, how), rtol=1e-5)
    if how == "bm25":  # saturation: doubling a code gains less than double
        j = int(np.flatnonzero(pool[0])[0])
        doubled = pool[:1].copy()
        doubled[0, j] *= 2
        once, twice = (weigh(sp.csr_matrix(r), stats, how).toarray()[0, j] for r in (pool[:1], doubled))
        assert once < twice < 2 * once


def _weighted_case(root, seed, how):
    """A cached pool of 30 codes, 4 target codes, and both weighted by NumPy: (cache, targets, wp, wt)."""
    rng = np.random.default_rng(seed)
    pool, targets = _codes(rng, 30, 16), _codes(rng, 4, 16)
    return _cache(root, pool, seed), targets, _np_weigh(pool, pool, how), _np_weigh(targets, pool, how)


def _np_scores(wp, wt, aggregation, proto=lambda v: v):
    """NumPy Jaccard of pool rows to the (transformed) mean target, or their max over the targets."""
    if aggregation == "mean":
        return _jaccard(wp, proto(wt.mean(0)))
    return np.stack([_jaccard(wp, proto(t)) for t in wt]).max(0)


@pytest.mark.parametrize("aggregation", ["mean", "max"])
def test_weighted_jaccard_through_the_cache(tmp_path, aggregation):
    cache, targets, wp, wt = _weighted_case(tmp_path, 2, "bm25")
    got = score_cached(cache, targets, "jaccard", weighting="bm25", aggregation=aggregation)
    np.testing.assert_allclose(got, _np_scores(wp, wt, aggregation), rtol=1e-5)


@pytest.mark.parametrize("weighting", ["none", "idf"])
def test_unit_mass_jaccard_through_the_cache_is_an_l1_distance_rank(tmp_path, weighting):
    """code_norm l1: every (weighted) code scaled to sum 1 before the prototype; the Jaccard of unit-mass codes
    is (1 - d/2) / (1 + d/2), d their L1 distance, and a record scaled by 5 scores as the original."""
    rng = np.random.default_rng(3)
    pool, targets = _codes(rng, 30, 16), _codes(rng, 4, 16)
    pool[5] = 0.0  # an empty code stays empty (no division by zero)
    pool[7] = 5 * pool[6]
    cache = _cache(tmp_path, pool, 2)
    wp, wt = (_np_weigh(x, pool, weighting) if weighting != "none" else x for x in (pool, targets))

    def unit(x):
        m = x.sum(-1, keepdims=True)
        return x / np.where(m > 0, m, 1)

    proto = unit(wt).mean(0)
    d = np.abs(unit(wp) - proto).sum(-1)
    got = score_cached(cache, targets, "jaccard", weighting=weighting, code_norm="l1")
    live = np.arange(30) != 5
    np.testing.assert_allclose(got[live], ((1 - d / 2) / (1 + d / 2))[live], rtol=1e-5)
    assert got[5] == 0.0 and got[7] == pytest.approx(got[6], rel=1e-6)


@pytest.mark.parametrize("aggregation", ["mean", "max"])
def test_prototype_keeps_its_largest_latents(tmp_path, aggregation):
    """prototype_latents N: the (idf-weighted) prototype, or each target for max, keeps its N largest latents."""
    cache, targets, wp, wt = _weighted_case(tmp_path, 4, "idf")

    def keep3(v):
        out = np.zeros_like(v)
        top = np.argsort(-v)[:3]
        out[top] = v[top]
        return out

    got = score_cached(cache, targets, "jaccard", weighting="idf", aggregation=aggregation, prototype_latents=3)
    np.testing.assert_allclose(got, _np_scores(wp, wt, aggregation, keep3), rtol=1e-5)
    assert not np.allclose(got, score_cached(cache, targets, "jaccard", weighting="idf", aggregation=aggregation))
