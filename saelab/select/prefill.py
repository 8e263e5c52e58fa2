"""Embed a pool once for many model methods: one forward per input format fills every missing cache entry.

A bench compares hidden states, MLP neurons and SAE codes at several hooks, each with its pooling; embedded
one by one, every entry would run the model over the whole pool again (minutes per entry on a CPU). Here
the configs that share an input format (template, max_tokens) share one forward to their deepest hook, which
records every hook they read; each SAE encodes its hook once and each entry pools its own way. The entries
are keyed exactly as `scoring.make_embedder` keys them, so `score_pool` then finds them complete. Each
entry's `seconds` is the shared pass's time and `shared_by` says between how many entries it was shared.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from saelab.models import HookContext, Model, forward
from saelab.models.hooks import stop_layer
from saelab.runtime.progress import progress_bar
from saelab.sae import encode
from saelab.select.cache import EmbeddingCache, file_digest
from saelab.select.config import FUSED_METHODS, MODEL_METHODS, SelectConfig
from saelab.select.embed import ModelEmbedder, neuron_hook, pad_batch, pool_tokens
from saelab.select.pool import batched, read_records

__all__ = ["prefill"]


def prefill(cfgs: Sequence[SelectConfig], model: Model, make_embedder: Callable) -> int:
    """Fill the cache entries of every model-method config (fused ones: their SAE part) that are not complete
    yet; `make_embedder` is scoring.make_embedder. Returns the number of entries written."""
    todo: dict[str, tuple[EmbeddingCache, ModelEmbedder, SelectConfig]] = {}
    for c in cfgs:
        if c.method in FUSED_METHODS:
            c = c.model_copy(update={"method": FUSED_METHODS[c.method]})
        if c.method not in MODEL_METHODS or c.cache_dir is None:
            continue
        emb, fields = make_embedder(c, model)
        cache = EmbeddingCache(Path(c.cache_dir), {**fields, "data": file_digest(c.pool), "text_field": c.text_field})
        if not cache.complete:
            todo.setdefault(str(cache.dir), (cache, emb, c))
    groups: dict[tuple, list] = {}
    for job in todo.values():
        c = job[2]
        groups.setdefault((c.template, c.max_tokens, c.batch_size, str(c.pool), c.text_field, c.chunk), []).append(job)
    for jobs in groups.values():
        _fill(jobs, model)
    return len(todo)


def _fill(jobs: list, model: Model) -> None:
    """One pass over the pool for jobs sharing an input format."""
    first: ModelEmbedder = jobs[0][1]
    c: SelectConfig = jobs[0][2]
    specs = tuple(_spec(e) for _, e, _ in jobs)
    saes = [e.sae.params if e.sae is not None else None for _, e, _ in jobs]
    fn = _multi_fn(model.cfg, specs)
    for cache, _, _ in jobs:
        cache.start()
    t0 = time.perf_counter()
    n = sum(1 for _ in read_records(c.pool, c.text_field))
    with progress_bar("samples/s", c.progress) as bar:
        task = bar.add_task("embed pool", total=n, info=f"{len(jobs)} entries, one forward")
        for recs in batched(read_records(c.pool, c.text_field), c.chunk):
            wrapped = first.wrap([r.text for r in recs])
            order = np.array(sorted(range(len(wrapped)), key=lambda i: (len(wrapped[i].ids), wrapped[i].ids)))
            outs = [np.zeros((len(wrapped), e.width), np.float32) for _, e, _ in jobs]
            for start in range(0, len(wrapped), c.batch_size):
                rows = order[start : start + c.batch_size]
                toks, mask, content = pad_batch([wrapped[i] for i in rows], c.batch_size)
                embs = fn(model.params, saes, jnp.asarray(toks), jnp.asarray(mask), jnp.asarray(content))
                for o, e in zip(outs, embs, strict=True):
                    o[rows] = np.asarray(e)[: len(rows)]
            for (cache, e, _), o in zip(jobs, outs, strict=True):
                cache.write(sp.csr_matrix(o) if e.kind == "sae" else o)
            bar.update(task, advance=len(recs))
    dt = time.perf_counter() - t0
    for cache, _, _ in jobs:
        cache.finish({"seconds": dt, "shared_by": len(jobs)})


def _spec(e: ModelEmbedder) -> tuple[Any, ...]:
    read = neuron_hook(e.hook) if e.kind == "neurons" else e.hook
    key = id(e.sae) if e.sae is not None else None
    return (read, e.kind, e.sae.cfg if e.sae is not None else None, key, e.pooling, e.skip_tokens)


@functools.lru_cache(maxsize=8)  # compiled programs keyed by configs; the weights are arguments
def _multi_fn(cfg, specs: tuple) -> Callable:
    """Jitted (params, sae params per spec, tokens, mask, content) -> one pooled (batch, width) per spec."""
    reads = tuple(sorted({s[0] for s in specs}))
    stop = stop_layer(reads, cfg.n_layers)

    @jax.jit
    def run(params, saes, tokens, mask, content):
        _, cache = forward(params, cfg, tokens, mask, HookContext(cache=reads), stop)
        codes: dict[tuple, jax.Array] = {}
        out = []
        for (read, kind, sae_cfg, key, pooling, skip), sae_params in zip(specs, saes, strict=True):
            x = cache[read].astype(jnp.float32)  # (batch, seq, width)
            if kind == "sae":
                if (read, key) not in codes:
                    b, s, d = x.shape
                    codes[read, key] = encode(sae_params, x.reshape(b * s, d), sae_cfg).reshape(b, s, -1)
                x = codes[read, key]
            out.append(pool_tokens(x, content, pooling, skip))
        return out

    return run
