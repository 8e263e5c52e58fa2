"""Per-target aggregation (mean prototype, max, top-m) against NumPy, for the SAE methods, the hidden-state
baseline, BM25 (with BM25 itself restated in NumPy) and DSIR: every method combines its targets alike."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from saelab.sae import load_sae
from saelab.select import SelectConfig
from saelab.select.baselines import BM25Scorer, DSIRScorer
from saelab.select.embed import ModelEmbedder
from saelab.select.scoring import score_pool, score_texts
from saelab.select.similarity import aggregate

HOOK = "blocks.1.hook_resid_post"
TARGETS = ["set a timer for five minutes", "play some music please", "timer please"]


def test_aggregate_by_hand():
    s = np.array([[0.1, 0.9, 0.4], [0.5, 0.2, 0.4], [0.3, 0.6, 0.0]])
    np.testing.assert_allclose(aggregate(s, "mean"), [0.3, 1.7 / 3, 0.8 / 3])
    np.testing.assert_allclose(aggregate(s, "max"), [0.5, 0.9, 0.4])
    np.testing.assert_allclose(aggregate(s, "topm", 2), [0.4, 0.75, 0.4])
    np.testing.assert_allclose(aggregate(s, "topm", 5), aggregate(s, "mean"))  # m >= k: all of them


def _np_jaccard(a, b):
    return np.minimum(a, b).sum(-1) / np.maximum(a, b).sum(-1)


def _np_cosine(a, b):
    return a @ b / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b))


@pytest.mark.parametrize("aggregation", ["mean", "max", "topm"])
@pytest.mark.parametrize("method", ["jaccard", "cosine", "hidden"])
def test_model_methods_aggregate_like_numpy(tmp_path, tiny_model, tiny_sae, pool_and_target, method, aggregation):
    pool, _ = pool_and_target
    texts = [json.loads(x)["text"] for x in pool.read_text().splitlines()]
    kind = "hidden" if method == "hidden" else "sae"
    emb = ModelEmbedder(tiny_model, HOOK, kind, load_sae(tiny_sae) if kind == "sae" else None)
    dense = lambda t: (lambda e: e.toarray() if kind == "sae" else e)(emb(t)).astype(np.float64)  # noqa: E731
    P, T = dense(texts), dense(TARGETS)  # (n, width), (k, width)
    if method == "hidden":  # centred on the pool mean, then cosine
        mu = P.mean(0)
        P, T = P - mu, T - mu
    sim = _np_jaccard if method == "jaccard" else _np_cosine
    if aggregation == "mean":
        expected = sim(P, T.mean(0))
    else:
        per = np.stack([sim(P, t) for t in T])  # (k, n)
        expected = per.max(0) if aggregation == "max" else np.sort(per, 0)[-2:].mean(0)
    cfg = SelectConfig(
        pool=pool,
        target=pool,
        method=method,
        sae=tiny_sae,
        aggregation=aggregation,
        top_m=2,
        cache_dir=tmp_path,
        chunk=3,
        progress=False,
    )
    got = score_pool(cfg, TARGETS, len(texts), model=tiny_model).scores
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)
    if aggregation != "mean":
        assert not np.allclose(expected, sim(P, T.mean(0)), atol=1e-3)  # differs from the prototype


POOL = ["set timer five minutes", "timer timer alarm", "weather today sunny", "play music loud", "music timer"]


def _np_bm25(docs, query, k1=1.5, b=0.75):
    """bm25s's default (Lucene) BM25: idf = log(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 (1 - b + b l / avg))
    (Lucene drops the constant factor k1 + 1)."""
    toks = [re.findall(r"(?u)\b\w\w+\b", d.lower()) for d in docs]
    n, avg = len(toks), np.mean([len(t) for t in toks])
    out = np.zeros(n)
    for w in set(re.findall(r"(?u)\b\w\w+\b", query.lower())):
        df = sum(w in t for t in toks)
        if not df:
            continue
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, t in enumerate(toks):
            tf = t.count(w)
            out[i] += idf * tf / (tf + k1 * (1 - b + b * len(t) / avg))
    return out


@pytest.mark.parametrize("aggregation", ["mean", "max", "topm"])
def test_text_methods_aggregate_like_numpy(aggregation):
    queries = ["timer five", "music", "weather alarm"]
    bm25 = BM25Scorer(lambda: iter([POOL]))
    per = np.stack([_np_bm25(POOL, q) for q in queries])
    np.testing.assert_allclose(bm25.per_target(queries), per, rtol=1e-5)
    want = {"mean": per.mean(0), "max": per.max(0), "topm": np.sort(per, 0)[-2:].mean(0)}[aggregation]
    np.testing.assert_allclose(score_texts(bm25, queries, aggregation, 2), want, rtol=1e-5)
    dsir = DSIRScorer(lambda: iter([POOL]))
    per = dsir.per_target(queries)
    want = {"mean": dsir(queries), "max": per.max(0), "topm": np.sort(per, 0)[-2:].mean(0)}[aggregation]
    np.testing.assert_allclose(score_texts(dsir, queries, aggregation, 2), want)
