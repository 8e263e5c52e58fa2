"""A cross-layer transcoder's batches, straight from the model: one forward per forward batch runs the model to
its last spanned layer, and every layer's MLP input and output at the same token positions are stacked into
x (batch, L, d_in) and y (batch, L, d_out) (the `ModelStream` of saelab.train.stream, its shuffle buffer and
exact resume, drawn by one `StackedFeed`).

Each layer's hooks are scaled by their own statistics (a layer's MLP output can be many times another's), so the
input and output scales are one per layer; saelab.sae.clt_train folds them back at export.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from saelab.sae import CLTConfig
from saelab.store.loader import Batch
from saelab.train.clt_config import layer_hooks
from saelab.train.data_source import ModelData
from saelab.train.init_b_dec import B_DEC_SAMPLE
from saelab.train.source import Source, input_scale
from saelab.train.stream import ModelStream

__all__ = ["StackedFeed", "CLTSource", "open_clt_source"]


class StackedFeed:
    """Batches of a CLT from a `ModelStream` of every layer's MLP input and output: x (batch, L, d_in) and
    y (batch, L, d_out), sharded on the batch axis; `last` is the batch drawn last (an export calibrates on it;
    a run resumed at its last step, with no batch left to draw, calibrates on the next one)."""

    def __init__(self, stream: ModelStream, inputs: tuple[str, ...], targets: tuple[str, ...], mesh: Mesh) -> None:
        self.stream, self.inputs, self.targets = stream, inputs, targets
        rows = NamedSharding(mesh, P("data", None, None))
        self._stack = jax.jit(lambda hooks: jnp.stack(hooks, axis=1), out_shardings=rows)  # (batch, L, d)
        self.last: Batch | None = None

    def __iter__(self) -> StackedFeed:
        return self

    def __next__(self) -> Batch:
        cur = next(self.stream)
        x = self._stack(tuple(cur[h] for h in self.inputs))
        self.last = Batch(x, np.empty(0, np.int64), self._stack(tuple(cur[h] for h in self.targets)))
        return self.last

    def get_state(self) -> dict[str, Any]:
        return self.stream.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.stream.set_state(state)


class CLTSource(NamedTuple):
    """The trainer's view of a CLT's batches and each layer's input and output scale."""

    source: Source
    in_scales: tuple[float, ...]  # (L,) each layer's MLP-input scale
    out_scales: tuple[float, ...]  # (L,) each layer's MLP-output scale


def open_clt_source(
    data: ModelData, sae: CLTConfig, batch_size: int, mesh: Mesh, mode: str, saved: dict[str, Any] | None
) -> CLTSource:
    """The batches of the CLT `sae` (layers 0..n_layers-1 of `data.model`), scaled per layer by `mode`
    (train.input_scaling). `saved` is the stream state of the checkpoint resumed (its statistics are reused);
    None for a fresh run, whose first fill is made now (the statistics and the b_dec sample come from it)."""
    if jax.process_count() > 1:
        raise ValueError("data.source='model' trains in one process; a CLT trains on the fly only")
    inputs, targets = layer_hooks(sae.n_layers)
    stream = ModelStream(data, inputs + targets, batch_size, mesh)
    if saved is None:
        stream.prime()
    else:
        stream.set_state(saved)
    feed, msq = StackedFeed(stream, inputs, targets, mesh), stream.mean_sq_norm

    scales = lambda hooks, d: tuple(input_scale(_stats(msq[h]), mode, d) for h in hooks)

    def sample() -> np.ndarray | None:  # (rows, L, d_out) raw MLP outputs of the first fill: b_dec's space
        return np.stack([np.asarray(stream.buffer[h][:B_DEC_SAMPLE]) for h in targets], axis=1)

    stats = {"per_layer_mean_sq_norm": [msq[h] for h in inputs]}
    src = Source(
        feed,
        stats,
        sample if saved is None else (lambda: None),
        lambda step: np.empty(0, np.int64),  # rows were checked finite when the buffer was filled
        lambda rows: rows[:0],
        {"per_layer_mean_sq_norm": [msq[h] for h in targets]},
        lambda: np.asarray(jax.device_get((feed.last or next(feed)).x)),  # a resume with no step left draws one
    )
    return CLTSource(src, scales(inputs, sae.d_in), scales(targets, sae.resolved_d_out))


def _stats(msq: float) -> dict[str, float]:
    return {"mean_sq_norm": msq, "mean_sq_norm_no_bos": msq}  # BOS positions never enter the stream
