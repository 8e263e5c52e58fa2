"""Harvest activations: corpus -> packed windows -> one forward pass per batch -> activation store.

All requested hooks come from a single forward that stops after the deepest hooked block. The next batch
is dispatched before the previous one is copied to the host, so the device never waits for disk. A killed
harvest rerun with the same settings resumes after the last complete shard and produces the same store.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from saelab.data import open_corpus, pack_batches
from saelab.harvest.config import HarvestConfig
from saelab.models import Model, hook_layer, validate_hook_names
from saelab.progress import progress_bar
from saelab.store import StoreWriter

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def run(cfg: HarvestConfig, model: Model | None = None, progress: bool = True) -> Path:
    """Harvest `cfg.tokens` tokens into `cfg.out` (resuming if a matching partial store is there)."""
    model = model or Model.load(cfg.model, dtype=cfg.model_dtype)
    validate_hook_names(cfg.hooks, model.cfg.n_layers)
    width = _hook_width(model, cfg.hooks)
    if model.tokenizer is None or model.bos_id is None:
        raise ValueError(f"model {cfg.model} has no tokenizer with a BOS id; harvesting needs both")
    corpus = open_corpus(cfg.corpus, split=cfg.split)
    meta = {
        "model": cfg.model, "weights_hash": model.weights_hash, "model_dtype": cfg.model_dtype,
        "corpus": cfg.corpus, "split": cfg.split, "corpus_fingerprint": corpus.fingerprint(),
        "context": cfg.context, "within_document": cfg.within_document, "tokens_requested": cfg.tokens,
        "bos_id": model.bos_id, "eos_id": model.eos_id,
    }
    writer = StoreWriter.create_or_resume(
        cfg.out, meta=meta, hooks=list(cfg.hooks), d_model=width, dtype=cfg.dtype,
        shard_tokens=cfg.shard_tokens_aligned, overwrite=cfg.overwrite,
    )
    if writer.complete:
        return Path(cfg.out)
    done_windows = writer.n_tokens_done // cfg.context
    total_windows = cfg.n_windows
    forward = _forward_fn(model, tuple(cfg.hooks), _DTYPES[cfg.dtype])
    batches = pack_batches(
        corpus, model.tokenizer, bos_id=model.bos_id, eos_id=model.eos_id, context=cfg.context,
        batch=cfg.batch, within_document=cfg.within_document, skip_windows=done_windows,
    )
    with progress_bar("tok/s", progress) as bar:
        task = bar.add_task("harvest", total=total_windows * cfg.context, completed=done_windows * cfg.context, info=str(cfg.out))
        pending = None
        windows = done_windows
        for b in batches:
            take = min(len(b.tokens), total_windows - windows)
            if take <= 0:
                break
            toks = _pad_rows(b.tokens[:take], cfg.batch)
            acts = forward(model.params, jnp.asarray(toks))  # dispatched asynchronously
            if pending is not None:
                _write(writer, *pending)
                bar.update(task, advance=pending[1].tokens.size)
            pending = (acts, b._replace(tokens=b.tokens[:take], doc=b.doc[:take], pos=b.pos[:take]))
            windows += take
        if pending is not None:
            _write(writer, *pending)
            bar.update(task, advance=pending[1].tokens.size)
    if windows < total_windows:
        print(f"corpus {cfg.corpus} ran out after {windows * cfg.context:,} tokens "
              f"(asked for {cfg.tokens:,}); the store holds what there was")
    writer.finalize()
    return Path(cfg.out)


def _hook_width(model: Model, hooks: list[str]) -> int:
    c = model.cfg
    widths = {}
    for h in hooks:
        if h.endswith("attn.hook_result"):
            raise ValueError(f"{h} is (heads x d_model) per token; harvest hook_attn_out or attn.hook_z instead")
        widths[h] = c.d_mlp if h.endswith("mlp.hook_post") else c.n_heads * c.d_head if h.endswith("hook_z") else c.d_model
    if len(set(widths.values())) > 1:
        raise ValueError(f"hooks of different widths cannot share a store: {widths}; harvest them separately")
    return next(iter(widths.values()))


def _forward_fn(model: Model, hooks: tuple[str, ...], dtype: jnp.dtype):
    """Jitted (params, tokens) -> {hook: (tokens, width) in storage dtype}, stopping at the deepest hook."""
    from saelab.models import HookContext, forward

    stop = max(hook_layer(h) for h in hooks) + 1

    @jax.jit
    def run(params, tokens):
        _, cache = forward(params, model.cfg, tokens, None, HookContext(cache=hooks), stop)
        return {h: cache[h].reshape(-1, cache[h].shape[2] * (cache[h].shape[3] if cache[h].ndim == 4 else 1)).astype(dtype)
                for h in hooks}

    return run


def _pad_rows(x: np.ndarray, n: int) -> np.ndarray:
    """Pad a short last batch to the compiled batch size (the extra rows are dropped after the forward)."""
    if len(x) == n:
        return x
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)])


def _write(writer: StoreWriter, acts: dict[str, jax.Array], b) -> None:
    n = b.tokens.size
    writer.append(
        {h: np.asarray(a)[:n] for h, a in acts.items()},
        tokens=b.tokens.reshape(-1), doc=b.doc.reshape(-1), pos=b.pos.reshape(-1),
    )
