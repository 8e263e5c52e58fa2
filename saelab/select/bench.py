"""The labelled-pool bench of docs/selection.md, "The method" on CLINC150: every selection method in one table.

Pool: the `pool_split` records (7,500 utterances of 75 intents in 5 domains). Targets: for each intent,
`n_intent` utterances of it drawn from `target_split` (intent level); for each domain, `n_domain` (domain
level). A method ranks the pool against each target; we report, averaged over the targets of a level,
precision and recall of the top 1/5/10 % (the share of the selection with the target's label, and the
share of the label's pool records selected) and average precision over the full ranking. Time per 1,000
samples = (pool embedding or indexing time + mean scoring time per target) / pool size * 1,000; for embeddings
from the cache, the time measured when they were computed (jit compiles included, model loading not); for
entries prefilled together in one forward, their equal share of that pass.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from saelab.select.config import FUSED_METHODS, MODEL_METHODS, SAE_METHODS, BenchConfig, SelectConfig
from saelab.select.prefill import prefill
from saelab.select.scoring import TEXT_SCORERS, make_embedder, pool_chunks, prepare_fused, score_pool
from saelab.select.similarity import n_selected, rank_order, tie_keys

__all__ = ["BenchConfig", "BenchRow", "run_bench", "precision_recall", "average_precision", "format_table"]


class BenchRow(NamedTuple):
    method: str
    sae: str  # SAE (or hook) the method read; "" for text baselines
    level: str
    options: str  # the settings that apply to this method (aggregation, and for model methods pooling etc.)
    precision: dict[float, float]  # ratio -> mean precision over targets
    recall: dict[float, float]
    ap: float
    ms_per_1k: float  # milliseconds per 1,000 pool samples (embedding + scoring one target)
    n_targets: int


def precision_recall(
    scores: np.ndarray, relevant: np.ndarray, ratio: float, keys: np.ndarray | None = None
) -> tuple[float, float]:
    """(precision, recall) of the top `ratio` of the ranking (ties broken by `keys`, see rank_order) against
    the boolean `relevant` labels."""
    top = rank_order(scores, keys)[: n_selected(len(scores), ratio)]
    hits = relevant[top].sum()
    return float(hits / len(top)), float(hits / max(relevant.sum(), 1))


def average_precision(scores: np.ndarray, relevant: np.ndarray, keys: np.ndarray | None = None) -> float:
    """Mean over the relevant records of the precision of the ranking (ties broken by `keys`) down to each."""
    rel = relevant[rank_order(scores, keys)]
    if not rel.any():
        return 0.0
    prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float(prec[rel].mean())


def run_bench(cfg: BenchConfig, model: Any = None) -> list[BenchRow]:
    """Run every method on every target set; writes bench.json and bench.md into cfg.out. `model`: a loaded
    saelab Model to use instead of loading `cfg.model` (tests)."""
    pool_path, pool = _load_pool(cfg)
    targets = _targets(cfg)
    keys = tie_keys([json.dumps(r, sort_keys=True).encode() for r in pool], cfg.seed)
    rows: list[BenchRow] = []
    embed_times: dict[str, float] = {}  # cache entry -> seconds it took to embed the pool (shared by methods)
    with tempfile.TemporaryDirectory(prefix="saelab-select-bench-") as tmp:
        jobs = [(m, sae, hook, _select_cfg(cfg, m, sae, hook, pool_path, tmp)) for m, sae, hook in _jobs(cfg)]
        if model is None and any(j[0] in MODEL_METHODS or j[0] in FUSED_METHODS for j in jobs):
            from saelab.models import Model

            model = Model.load(cfg.model)
        if cfg.prefill and model is not None:
            prefill([j[3] for j in jobs], model, make_embedder)
        done: set[tuple[str, str]] = set()
        memo: dict[tuple, Any] = {}  # target embeddings, shared by the methods and aggregations of one embedder
        for method, sae, hook, base in jobs:
            t0 = time.perf_counter()
            if method in TEXT_SCORERS:  # index the pool once, score every target against it
                prepared = TEXT_SCORERS[method](pool_chunks(base))
                embed_times[method] = time.perf_counter() - t0
            elif method in FUSED_METHODS:
                emb, bm25 = prepare_fused(base, model)
                prepared = (_memo(emb, memo), bm25)
            else:
                prepared = _memo(make_embedder(base, model), memo) if method != "random" else None
            name = "" if sae is None and hook is None else _sae_name(sae, prepared)
            if method in ("hidden", "neurons"):  # several SAEs at one hook: one row group per hook
                if (method, prepared[1]["hook"]) in done:
                    continue
                done.add((method, prepared[1]["hook"]))
            for agg in cfg.aggregations if method != "random" else cfg.aggregations[:1]:
                sc = base.model_copy(update={"aggregation": agg})
                for level, sets in targets.items():
                    res = [score_pool(sc, texts, len(pool), prepared, keys=keys) for _, texts in sets]
                    key = res[0].info.get("cache", method)
                    embed_s = embed_times.setdefault(key, max(r.embed_s for r in res))  # once per embedding
                    label = f"{method}+idf" if cfg.idf and method in SAE_METHODS else method
                    opts = _options(sc)
                    rows.append(_row(label, name, level, opts, res, sets, pool, cfg.ratios, embed_s, keys))
                    print(format_table([rows[-1]], cfg.ratios, header=len(rows) == 1), flush=True)
    _write(cfg, rows)
    return rows


def format_table(rows: list[BenchRow], ratios: list[float], header: bool = True) -> str:
    """Markdown table: method, SAE, level, options, P@r, R@r, AP, ms per 1,000 samples."""
    cols = [
        "method",
        "SAE / hook",
        "level",
        "options",
        *[f"P@{r:.0%}" for r in ratios],
        *[f"R@{r:.0%}" for r in ratios],
        "AP",
        "ms/1k",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] if header else []
    for r in rows:
        vals = [
            r.method,
            r.sae or "-",
            r.level,
            r.options,
            *[f"{r.precision[x]:.3f}" for x in ratios],
            *[f"{r.recall[x]:.3f}" for x in ratios],
            f"{r.ap:.3f}",
            f"{r.ms_per_1k:,.0f}",
        ]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _jobs(cfg: BenchConfig) -> list[tuple[str, Path | None, str | None]]:
    """(method, SAE, hook) of every row group: SAE methods per SAE, hidden/neurons per SAE's hook and per
    extra hook, the text baselines once."""
    jobs = []
    for m in cfg.methods:
        if m in SAE_METHODS or m in FUSED_METHODS:
            jobs += [(m, s, None) for s in cfg.saes]
        elif m in ("hidden", "neurons"):
            jobs += [(m, s, None) for s in cfg.saes] + [(m, None, h) for h in cfg.hooks]
        else:
            jobs.append((m, None, None))
    return jobs


def _select_cfg(cfg: BenchConfig, method: str, sae: Path | None, hook: str | None, pool: Path, tmp: str):
    return SelectConfig(
        pool=pool,
        target=Path(tmp) / "unused-target.jsonl",  # SelectConfig wants a path; the texts are passed in
        method=method,
        model=cfg.model,
        sae=sae,
        hook=hook,
        batch_size=cfg.batch_size,
        cache_dir=cfg.cache_dir or Path(tmp) / "cache",
        idf=cfg.idf,
        weighting=cfg.weighting,
        code_norm=cfg.code_norm,
        prototype_latents=cfg.prototype_latents,
        bm25_k1=cfg.bm25_k1,
        bm25_b=cfg.bm25_b,
        pooling=cfg.pooling,
        skip_tokens=cfg.skip_tokens,
        template=cfg.template,
        max_tokens=cfg.max_tokens,
        top_m=cfg.top_m,
        seed=cfg.seed,
        progress=cfg.progress,
    )


class _MemoEmbedder:
    """An embedder whose results for small inputs (target sets) are kept, keyed by its cache fields: the bench
    embeds each target set once per embedding, not once per similarity and aggregation."""

    def __init__(self, emb: Any, key: str, memo: dict) -> None:
        self.emb, self.key, self.memo = emb, key, memo

    def __call__(self, texts):
        if len(texts) > 256:
            return self.emb(texts)
        k = (self.key, tuple(texts))
        if k not in self.memo:
            self.memo[k] = self.emb(texts)
        return self.memo[k]


def _memo(prepared: tuple[Any, dict], memo: dict) -> tuple[Any, dict]:
    emb, fields = prepared
    return _MemoEmbedder(emb, json.dumps(fields, sort_keys=True, default=str), memo), fields


def _sae_name(sae: Path | None, embedder: Any) -> str:
    if isinstance(embedder, tuple) and isinstance(embedder[0], tuple):  # a fused method's (embedder, BM25)
        embedder = embedder[0]
    hook = embedder[1].get("hook", "") if embedder else ""
    return f"{Path(sae).name} ({hook})" if sae is not None else hook


def _load_pool(cfg: BenchConfig) -> tuple[Path, list[dict]]:
    src = cfg.data / f"{cfg.pool_split}.jsonl"
    if not src.is_file():
        raise FileNotFoundError(f"bench pool {src} does not exist (expected CLINC150-style JSONL in {cfg.data})")
    lines = src.read_bytes().splitlines(keepends=True)[: cfg.pool_limit]
    cfg.out.mkdir(parents=True, exist_ok=True)
    path = cfg.out / "pool.jsonl"
    path.write_bytes(b"".join(lines))
    return path, [json.loads(x) for x in lines]


def _targets(cfg: BenchConfig) -> dict[str, list[tuple[str, list[str]]]]:
    """level -> [(label, target texts)], drawn with a seeded shuffle of the target split."""
    recs = [json.loads(x) for x in (cfg.data / f"{cfg.target_split}.jsonl").read_text().splitlines() if x.strip()]
    rng = np.random.default_rng(cfg.seed)
    out = {}
    for level in cfg.levels:
        n = cfg.n_intent if level == "intent" else cfg.n_domain
        labels = sorted({r[level] for r in recs})[: cfg.max_labels]
        sets = []
        for lab in labels:
            texts = [r["text"] for r in recs if r[level] == lab]
            sets.append((lab, [texts[i] for i in rng.permutation(len(texts))[:n]]))
        out[level] = sets
    return out


def _options(sc: SelectConfig) -> str:
    """The settings a row's method uses, e.g. `max` or `topm-2, pool max, w bm25, chat`; random has none."""
    if sc.method == "random":
        return "-"
    opts = [f"topm-{sc.top_m}" if sc.aggregation == "topm" else sc.aggregation]
    if sc.method in MODEL_METHODS or sc.method in FUSED_METHODS or sc.method == "embed":
        if sc.method != "embed":
            skip = f"{sc.skip_tokens}" if sc.pooling == "mean-skip" else ""
            opts += [f"pool {sc.pooling}{skip}"] if sc.pooling != "mean" else []
            opts += [sc.template] if sc.template != "none" else []
        if sc.method in SAE_METHODS or sc.method in FUSED_METHODS:
            opts += [f"w {sc.latent_weighting}"] if sc.latent_weighting != "none" else []
            opts += [f"norm {sc.code_norm}"] if sc.code_norm != "none" else []
            opts += [f"proto top-{sc.prototype_latents}"] if sc.prototype_latents is not None else []
    return ", ".join(opts)


def _row(method, name, level, options, res, sets, pool, ratios, embed_s, keys) -> BenchRow:
    p = {r: [] for r in ratios}
    rc = {r: [] for r in ratios}
    aps = []
    for r, (lab, _) in zip(res, sets, strict=True):
        relevant = np.array([x[level] == lab for x in pool])
        for ratio in ratios:
            a, b = precision_recall(r.scores, relevant, ratio, keys)
            p[ratio].append(a)
            rc[ratio].append(b)
        aps.append(average_precision(r.scores, relevant, keys))
    score_s = float(np.mean([r.score_s for r in res]))
    ms = (embed_s + score_s) / len(pool) * 1e6
    return BenchRow(
        method,
        name,
        level,
        options,
        {k: float(np.mean(v)) for k, v in p.items()},
        {k: float(np.mean(v)) for k, v in rc.items()},
        float(np.mean(aps)),
        ms,
        len(res),
    )


def _write(cfg: BenchConfig, rows: list[BenchRow]) -> None:
    data = {
        "config": cfg.model_dump(mode="json"),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": [r._asdict() for r in rows],
    }
    (cfg.out / "bench.json").write_text(json.dumps(data, indent=2))
    (cfg.out / "bench.md").write_text(format_table(rows, cfg.ratios) + "\n")
