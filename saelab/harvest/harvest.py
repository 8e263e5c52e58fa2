"""Harvest activations: corpus -> packed windows -> one forward pass per batch -> activation store.

All requested hooks come from a single forward that stops after the deepest hooked block. The next batch
is dispatched before the previous one is copied to the host, so the device never waits for disk. A killed
harvest rerun with the same settings resumes after the last complete shard and produces the same store.

Every batch is checked for NaN and Inf on the device (one reduction per window, fetched with the
activations, so no extra wait); only when one is found are the hook, document and position located on the
host. By default that stops the harvest (`NonFiniteError`); `on_nonfinite = "skip"` leaves such windows out
and counts them in the manifest (`skipped_windows`).

With several processes (`saelab.runtime.distributed`), the shards are split into contiguous blocks, one per process:
each process harvests the windows of its block on its own devices and writes those shards under their global
numbers, recording its progress in its own part manifest (so each resumes on its own). After a barrier,
process 0 writes the one manifest; the store is then the same as a one-process harvest's (bit for bit when
every process's first window starts a batch, i.e. windows per shard is a multiple of `batch`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from saelab.data import open_corpus, pack_for_model
from saelab.harvest.config import HarvestConfig
from saelab.models import Model, validate_hook_names
from saelab.models.hooked_forward import forward_fn, pad_rows, store_width
from saelab.models.hooks import HookFn
from saelab.runtime.distributed import barrier, is_main
from saelab.runtime.dtypes import float_dtype
from saelab.runtime.finite import NonFiniteError, first_nonfinite
from saelab.runtime.progress import progress_bar
from saelab.store import StoreWriter
from saelab.store.parts import Part, merge_parts


def run(
    cfg: HarvestConfig,
    model: Model | None = None,
    progress: bool = True,
    interventions: dict[str, HookFn] | None = None,
) -> Path:
    """Harvest `cfg.tokens` tokens into `cfg.out` (resuming if a matching partial store is there).

    `interventions` are pure hook functions applied during the forward (`saelab.models.hooks`), e.g. an
    ablation, or a fault injected by a test; they are not part of the store's identity.
    """
    model = model or Model.load(cfg.model, dtype=cfg.model_dtype, process=cfg.model_processing)
    if model.dtype != float_dtype(cfg.model_dtype, "model dtype"):
        raise ValueError(
            f"the model passed in computes in {model.dtype} but model_dtype is {cfg.model_dtype!r} (the store's "
            f"meta records it); load it with Model.load(..., dtype={cfg.model_dtype!r}) or set model_dtype to match"
        )
    validate_hook_names(cfg.hooks, model.cfg.n_layers)
    width = store_width(model, cfg.hooks)
    if model.tokenizer is None or model.bos_id is None:
        raise ValueError(f"model {cfg.model} has no tokenizer with a BOS id; harvesting needs both")
    corpus = open_corpus(cfg.corpus, split=cfg.split)
    layout = _layout(cfg, model, corpus.fingerprint(), width)
    processes = jax.process_count()
    opened = _open_writer(cfg, layout, processes)
    if opened is None:
        return Path(cfg.out)
    writer, first, total_windows = opened
    if writer.complete:
        return _merge(cfg.out, processes)
    done_windows = first + writer.n_tokens_done // cfg.context + writer.skipped_windows
    forward = forward_fn(model, tuple(cfg.hooks), float_dtype(cfg.dtype, "store dtype"), cfg.batch, interventions or {})
    batches = pack_for_model(
        corpus,
        model,
        context=cfg.context,
        batch=cfg.batch,
        within_document=cfg.within_document,
        skip_windows=done_windows,
    )
    span = _Span(first, done_windows, total_windows)
    windows = _write_batches(cfg, writer, forward, batches if done_windows < total_windows else (), span, progress)
    if windows < total_windows:
        print(
            f"corpus {cfg.corpus} ran out after {windows * cfg.context:,} tokens "
            f"(asked for {cfg.tokens:,}); the store holds what there was"
        )
    writer.finalize()
    if writer.skipped_windows:
        print(
            f"harvest: {writer.skipped_windows} window(s) with NaN or Inf activations left out of {cfg.out} "
            "(on_nonfinite='skip'; counted in the manifest's skipped_windows)"
        )
    return _merge(cfg.out, processes)


class _Span(NamedTuple):
    """The windows of the stream this process harvests: [first, total), of which [first, done) are written."""

    first: int
    done: int
    total: int


def _layout(cfg: HarvestConfig, model: Model, fingerprint: str, width: int) -> dict[str, Any]:
    """The store's identity and shape (its manifest's meta, hooks, width, dtype, shard size)."""
    meta = {
        "model": cfg.model,
        "weights_hash": model.weights_hash,
        "model_dtype": cfg.model_dtype,
        "corpus": cfg.corpus,
        "split": cfg.split,
        "corpus_fingerprint": fingerprint,
        "context": cfg.context,
        "within_document": cfg.within_document,
        "tokens_requested": cfg.tokens,
        "bos_id": model.bos_id,
        "eos_id": model.eos_id,
    }
    if cfg.model_processing != "none":  # absent otherwise, so stores made before the option still resume
        meta["model_processing"] = cfg.model_processing
    return {
        "meta": meta,
        "hooks": list(cfg.hooks),
        "d_model": width,
        "dtype": cfg.dtype,
        "shard_tokens": cfg.shard_tokens_aligned,
    }


def _open_writer(cfg: HarvestConfig, layout: dict[str, Any], processes: int) -> tuple[StoreWriter, int, int] | None:
    """(writer, first window, end window) of this process's part of the store; None when a shared store is
    already complete."""
    if processes > 1 and cfg.on_nonfinite == "skip":
        raise ValueError(
            "on_nonfinite='skip' is for one-process harvests (skipped windows would shift the shards each "
            "process owns); harvest with one process or keep on_nonfinite='error'"
        )
    if processes == 1:
        return StoreWriter.create_or_resume(cfg.out, **layout, overwrite=cfg.overwrite), 0, cfg.n_windows
    part = share(cfg.n_windows, cfg.shard_tokens_aligned // cfg.context, jax.process_index(), processes)
    if _open_shared(cfg, layout, processes):
        return None
    writer = StoreWriter.create_or_resume_part(cfg.out, part)
    first = part.shards.start * cfg.shard_tokens_aligned // cfg.context
    return writer, first, min(part.shards.stop * cfg.shard_tokens_aligned // cfg.context, cfg.n_windows)


def _write_batches(
    cfg: HarvestConfig, writer: StoreWriter, forward, batches: Iterable, span: _Span, progress: bool
) -> int:
    """Forward and write the batches up to window `span.total`; each batch's forward is dispatched before the
    previous batch is copied to the host. Returns the window reached."""
    with progress_bar("tok/s", progress and is_main()) as bar:
        task = bar.add_task(
            "harvest",
            total=(span.total - span.first) * cfg.context,
            completed=(span.done - span.first) * cfg.context,
            info=str(cfg.out),
        )
        pending = None
        windows = span.done
        for b in batches:
            take = min(len(b.tokens), span.total - windows)
            if take <= 0:
                break
            acts, finite = forward(pad_rows(b.tokens[:take], cfg.batch))  # dispatched asynchronously
            if pending is not None:
                _write(writer, *pending, cfg)
                bar.update(task, advance=pending[2].tokens.size)
            pending = (acts, finite, b._replace(tokens=b.tokens[:take], doc=b.doc[:take], pos=b.pos[:take]), windows)
            windows += take
        if pending is not None:
            _write(writer, *pending, cfg)
            bar.update(task, advance=pending[2].tokens.size)
    return windows


def share(n_windows: int, shard_windows: int, process: int, processes: int) -> Part:
    """The contiguous block of global shards (of `shard_windows` windows each) that `process` harvests."""
    n_shards = -(-n_windows // shard_windows)
    return Part(process, processes, range(process * n_shards // processes, (process + 1) * n_shards // processes))


def _open_shared(cfg: HarvestConfig, layout: dict, processes: int) -> bool:
    """Every process checks the store (the same errors everywhere), then process 0 alone creates or replaces
    it; True when it is already complete."""
    done = StoreWriter.open_shared(cfg.out, **layout, processes=processes, overwrite=cfg.overwrite, act=False)
    barrier("saelab-harvest-check")
    if not done and is_main():
        StoreWriter.open_shared(cfg.out, **layout, processes=processes, overwrite=cfg.overwrite, act=True)
    barrier("saelab-harvest-open")
    return done


def _merge(out: Path, processes: int) -> Path:
    """With several processes: once all parts are final, process 0 writes the one manifest (a barrier before,
    so it never lists a shard still being written, and one after, so nobody returns before the store is)."""
    if processes > 1:
        barrier("saelab-harvest-parts")
        if is_main():
            merge_parts(out, processes)
        barrier("saelab-harvest-merged")
    return Path(out)


def _write(
    writer: StoreWriter, acts: dict[str, jax.Array], finite: jax.Array, b, first: int, cfg: HarvestConfig
) -> None:
    """Append one batch (windows `first`, ... of the stream); windows with a NaN or Inf stop the harvest or,
    with on_nonfinite='skip', are left out in stream order (good runs appended, bad ones recorded)."""
    n_win, ctx = b.tokens.shape
    host = {h: np.asarray(a)[: n_win * ctx] for h, a in acts.items()}
    ok = np.asarray(finite)[:n_win]
    if not ok.all() and cfg.on_nonfinite == "error":
        raise NonFiniteError(_describe_nonfinite(host, b, ok, first, cfg))
    lo = 0
    for r in [*np.flatnonzero(~ok), n_win]:
        if r > lo:
            rows = slice(lo * ctx, r * ctx)
            writer.append(
                {h: a[rows] for h, a in host.items()},
                tokens=b.tokens[lo:r].reshape(-1),
                doc=b.doc[lo:r].reshape(-1),
                pos=b.pos[lo:r].reshape(-1),
            )
        if r < n_win:
            writer.skip(1)
        lo = r + 1


def _describe_nonfinite(host: dict[str, np.ndarray], b, ok: np.ndarray, first: int, cfg: HarvestConfig) -> str:
    """Where the first NaN or Inf of a batch is (hook, document, position, window), and what to do about it."""
    ctx = b.tokens.shape[1]
    r = int(np.flatnonzero(~ok)[0])
    found = ((h, first_nonfinite(a[r * ctx : (r + 1) * ctx])) for h, a in host.items())
    h, ((p, dim), kind) = next((h, hit) for h, hit in found if hit is not None)
    if cfg.model_dtype == cfg.dtype == "float32":
        cause = f"The float32 model itself produced it: check the weights of {cfg.model} and any interventions"
    else:
        cause = (
            f"A {cfg.model_dtype} model stored as {cfg.dtype} can overflow: harvest with model_dtype='float32' "
            "and dtype='float32'"
        )
    return (
        f"harvest: {kind} activation at hook {h}, document {int(b.doc[r, p])}, position {int(b.pos[r, p])} "
        f"(window {first + r} of the stream, feature {dim}); {int((~ok).sum())} of this batch's {len(ok)} windows "
        f"are affected and nothing of them was written. {cause}, or pass on_nonfinite='skip' "
        "(--on-nonfinite skip) to leave such windows out (counted in the manifest)"
    )
