"""Reciprocal rank fusion by hand, and `jaccard+bm25` as a method: RRF of the Jaccard and BM25 rankings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saelab.select import SelectConfig, run
from saelab.select.fusion import reciprocal_rank_fusion
from saelab.select.scoring import pool_keys, score_pool


def test_rrf_by_hand():
    a = np.array([0.9, 0.1, 0.5, 0.3])  # ranks 1, 4, 2, 3
    b = np.array([1.0, 3.0, 2.0, 0.0])  # ranks 3, 1, 2, 4
    want = [1 / 61 + 1 / 63, 1 / 64 + 1 / 61, 1 / 62 + 1 / 62, 1 / 63 + 1 / 64]
    np.testing.assert_allclose(reciprocal_rank_fusion([a, b]), want)
    np.testing.assert_allclose(
        reciprocal_rank_fusion([a, b], k=1), [1 / 2 + 1 / 4, 1 / 5 + 1 / 2, 1 / 3 + 1 / 3, 1 / 4 + 1 / 5]
    )
    tied = reciprocal_rank_fusion([np.zeros(3)], keys=np.array([5, 1, 3], np.uint64))  # ties ranked by key
    np.testing.assert_allclose(tied, [1 / 63, 1 / 61, 1 / 62])


def test_fused_method_is_rrf_of_its_parts(tmp_path, tiny_model, tiny_sae, pool_and_target):
    pool, target = pool_and_target
    targets = [json.loads(x)["text"] for x in target.read_text().splitlines()]
    kw = dict(pool=pool, target=target, sae=tiny_sae, cache_dir=tmp_path / "c", progress=False, seed=3)
    n = 8
    keys = pool_keys(SelectConfig(**kw))
    parts = [score_pool(SelectConfig(method=m, **kw), targets, n, model=tiny_model).scores for m in ("jaccard", "bm25")]
    ranks = []
    for s in parts:
        order = np.lexsort((keys, -s.astype(np.float64)))
        r = np.empty(n, int)
        r[order] = np.arange(1, n + 1)
        ranks.append(r)
    want = 1 / (60 + ranks[0]) + 1 / (60 + ranks[1])
    got = score_pool(SelectConfig(method="jaccard+bm25", **kw), targets, n, model=tiny_model)
    np.testing.assert_allclose(got.scores, want)
    assert got.info["fused_with"] == "bm25"
    s = run(SelectConfig(method="jaccard+bm25", ratio=0.25, out=tmp_path / "o", **kw), model=tiny_model)
    assert s["method"] == "jaccard+bm25" and s["n_selected"] == 2
    with pytest.raises(ValueError, match="--sae"):
        SelectConfig(pool=pool, target=target, method="jaccard+bm25", sae=None)
