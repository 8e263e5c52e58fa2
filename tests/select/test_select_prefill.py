"""One forward fills the cache entries of many model methods (hooks, kinds, poolings, SAE) with the embeddings
each method's own embedder gives, and score_pool then reads them from the cache."""

from __future__ import annotations

import json

import numpy as np
import scipy.sparse as sp

from saelab.select import SelectConfig
from saelab.select.cache import EmbeddingCache, file_digest
from saelab.select.prefill import prefill
from saelab.select.scoring import make_embedder, score_pool


def _dense(e):
    return e.toarray() if sp.issparse(e) else e


def test_prefill_matches_each_embedder(tmp_path, tiny_model, tiny_sae, pool_and_target):
    pool, target = pool_and_target
    kw = dict(pool=pool, target=target, sae=tiny_sae, cache_dir=tmp_path / "c", progress=False, chunk=3)
    cfgs = [
        SelectConfig(method="jaccard", **kw),
        SelectConfig(method="jaccard+bm25", pooling="max", **kw),
        SelectConfig(method="hidden", hook="blocks.0.hook_resid_post", pooling="mean-skip", **kw),
        SelectConfig(method="neurons", **kw),
        SelectConfig(method="hidden", template="chat", **kw),
        SelectConfig(method="bm25", **kw),  # not a model method: nothing to fill
    ]
    assert prefill(cfgs, tiny_model, make_embedder) == 5
    assert prefill(cfgs, tiny_model, make_embedder) == 0  # all complete now
    texts = [json.loads(x)["text"] for x in pool.read_text().splitlines()]
    for c in cfgs[:5]:
        c = c.model_copy(update={"method": "jaccard"}) if c.method == "jaccard+bm25" else c
        emb, fields = make_embedder(c, tiny_model)
        cache = EmbeddingCache(c.cache_dir, {**fields, "data": file_digest(pool), "text_field": "text"})
        assert cache.complete and cache.meta["parts"] == 3 and cache.meta["shared_by"] in (1, 4)
        got = np.concatenate([_dense(p) for p in cache.parts()])
        np.testing.assert_allclose(got, _dense(emb(texts)), rtol=1e-4, atol=1e-5)
        assert score_pool(c, ["set a timer"], len(texts), model=tiny_model).cached


def test_bench_sweeps_hooks_without_an_sae(tmp_path, tiny_model):
    from saelab.select.bench import BenchConfig, run_bench

    recs = [
        {"text": f"{w} {x}", "intent": w, "domain": "d" + str(i % 2)}
        for i, w in enumerate(["timer", "music", "weather"])
        for x in ["please", "today", "five", "paris"]
    ]
    for split in ("train", "val"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    cfg = BenchConfig(
        data=tmp_path, methods=["hidden", "neurons"], saes=[], hooks=hooks, template="chat", n_intent=2,
        n_domain=2, out=tmp_path / "out", cache_dir=tmp_path / "c", progress=False,
    )  # fmt: skip
    rows = run_bench(cfg, model=tiny_model)
    assert [(r.method, r.sae, r.level) for r in rows] == [
        (m, h, lv) for m in ("hidden", "neurons") for h in hooks for lv in ("intent", "domain")
    ]
    assert all(r.options == "mean, chat" for r in rows)
