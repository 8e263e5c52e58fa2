"""Where a run's batches come from, as the trainer sees it (`Source`): the loader, the statistics that set the
input scale, the sample that sets the initial b_dec, and the rows a step read (for the fault message).

A store source is built here; the on-the-fly model sources are `saelab.train.stream_feed.open_sources`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import numpy as np
from jax.sharding import Mesh

from saelab.runtime.finite import NonFiniteError
from saelab.store import ActivationLoader, ActivationStore
from saelab.train.config import Resolved, TrainConfig
from saelab.train.init_b_dec import B_DEC_SAMPLE


class Source(NamedTuple):
    """What the trainer needs from a batch source (a store or the model)."""

    loader: Any  # iterator of Batch with get_state() / set_state()
    stats: dict[str, Any]  # mean_sq_norm(_no_bos) for the input scale
    b_dec_sample: Callable[[], np.ndarray | None]  # raw activations for the initial b_dec (None: keep zeros)
    rows: Callable[[int], np.ndarray]  # the rows a step trained on (for the fault message)
    bad_rows: Callable[[np.ndarray], np.ndarray]  # those of them holding NaN or Inf
    target_stats: dict[str, Any] | None = None  # a transcoder's target hook's, for its output scale
    calibration: Callable[[], Any] | None = None  # raw inputs an export is calibrated on (a TopK CLT's thresholds)


def input_scale(stats: dict[str, Any], mode: str, d_in: int) -> float:
    """The scalar that makes the mean squared norm (BOS excluded) d_in ("sqrt_d") or 1 ("unit")."""
    if mode == "none":
        return 1.0
    msq = stats["mean_sq_norm_no_bos"] or stats["mean_sq_norm"]
    return float(np.sqrt((d_in if mode == "sqrt_d" else 1.0) / msq))


def check_store_stats(store: ActivationStore, hook: str) -> None:
    """Refuse a store whose statistics count NaN/Inf activations: the input scale and every step would be NaN."""
    st = store.stats(hook)
    if st.get("n_nonfinite") or not np.isfinite(st.get("mean_sq_norm", 0.0)):
        raise NonFiniteError(
            f"store {store.path} holds {st.get('n_nonfinite', 'some')} NaN/Inf activation values in hook {hook} "
            f"(its statistics say so); `saelab store verify --deep {store.path}` names the shards and rows. "
            "Re-harvest it (with model_dtype='float32' and dtype='float32' if bfloat16 overflowed)"
        )


def store_loader(store: ActivationStore, r: Resolved, cfg: TrainConfig, mesh: Mesh) -> ActivationLoader:
    """Globally shuffled batches of `store` at `r.hook` (and a transcoder's target hook), after checking the
    statistics of both."""
    for hook in (r.hook, r.target_hook):
        if hook is not None:
            check_store_stats(store, hook)
    return ActivationLoader(
        store,
        r.hook,
        cfg.data.batch_size,
        seed=cfg.data.seed,
        include_bos=cfg.data.include_bos,
        mesh=mesh,
        dtype=store.activations(r.hook).dtype,  # as stored: the step casts on the device
        target_hook=r.target_hook,
    )


def store_source(store: ActivationStore, loader: ActivationLoader, r: Resolved, cfg: TrainConfig) -> Source:
    """The trainer's view of `loader`'s batches of `store` at `r.hook` (stats, b_dec sample, fault rows)."""
    view = store.activations(r.hook)

    def bad_rows(rows: np.ndarray) -> np.ndarray:
        return rows[~np.isfinite(view.take(rows, np.float32)).all(1)]

    target_stats = None if r.target_hook is None else store.stats(r.target_hook)
    sample = partial(store_sample, store, r, cfg)
    return Source(loader, store.stats(r.hook), sample, loader.global_indices, bad_rows, target_stats)


def store_sample(store: ActivationStore, r: Resolved, cfg: TrainConfig) -> np.ndarray:
    """Up to B_DEC_SAMPLE finite store rows (raw), drawn with the init seed."""
    idx = store.train_indices(cfg.data.include_bos)
    rng = np.random.default_rng(cfg.train.seed)
    sample = np.sort(rng.choice(idx, size=min(B_DEC_SAMPLE, len(idx)), replace=False))
    x = store.activations(r.target_hook or r.hook).take(sample, np.float32)  # b_dec is in the output space
    finite = np.isfinite(x).all(1)
    if not finite.all() and cfg.train.on_nonfinite == "error":
        shown = ", ".join(str(int(i)) for i in sample[~finite][:8])
        raise NonFiniteError(
            f"store {store.path} holds NaN/Inf activations at rows {shown} ({int((~finite).sum())} of the "
            f"{len(sample)} sampled for the initial b_dec); `saelab store verify --deep {store.path}` names every "
            "shard and row. Re-harvest it, or set train.on_nonfinite='skip' to train around such rows"
        )
    return x[finite]
