"""The trainer's view of an on-the-fly source: one `ModelStream` over every hook a run reads, and one feed per
(hook, target hook) pair drawing from it in lockstep.

A multi-SAE run of many transcoders (e.g. one per layer, `blocks.L.ln2.hook_normalized -> blocks.L.hook_mlp_out`)
runs the model once per forward batch for all of them: the stream holds every hook's rows at the same token
positions, and each `StreamFeed` hands its member the (input, target) pair of one step's draw. A single-SAE run
is the one-pair case.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from saelab.store.loader import Batch
from saelab.train.data_source import ModelData
from saelab.train.source import Source
from saelab.train.stream import ModelStream

Pair = tuple[str, str | None]  # (input hook, a transcoder's target hook or None)


class StreamFeed:
    """Batches of one (hook, target) pair of a shared `ModelStream`. Every feed of one stream is drawn once per
    step: the first draw of a step advances the stream, the others take the same draw."""

    def __init__(self, stream: ModelStream, pair: Pair) -> None:
        self.stream, (self.hook, self.target) = stream, pair
        self.steps = stream.steps

    def __iter__(self) -> StreamFeed:
        return self

    def __next__(self) -> Batch:
        if self.steps == self.stream.steps:
            next(self.stream)
        elif self.steps != self.stream.steps - 1:
            raise RuntimeError(
                f"feeds of one stream are drawn in lockstep: this one at {self.steps}, it at {self.stream.steps}"
            )
        self.steps += 1
        cur = self.stream.current
        return Batch(cur[self.hook], np.empty(0, np.int64), None if self.target is None else cur[self.target])

    def get_state(self) -> dict[str, Any]:
        return self.stream.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        """The stream's state (set once per feed, the same each time)."""
        self.stream.set_state(state)
        self.steps = self.stream.steps


def open_sources(
    data: ModelData, pairs: Sequence[Pair], batch_size: int, mesh: Mesh, saved: dict[str, Any] | None
) -> list[Source]:
    """One `Source` per pair, all fed by one stream of every hook the pairs name. `saved` is the restored stream
    state when resuming (its statistics are reused); None for a fresh run (the first fill is made now and gives
    each hook's statistic and b_dec sample)."""
    if jax.process_count() > 1:
        raise ValueError("data.source='model' trains in one process; harvest a store for multi-process runs")
    hooks = tuple(dict.fromkeys(h for pair in pairs for h in pair if h is not None))
    stream = ModelStream(data, hooks, batch_size, mesh)
    if saved is None:
        stream.prime()
    else:
        stream.set_state(saved)  # its statistics; the fill is rebuilt on the first draw
    msq = stream.mean_sq_norm
    return [_source(stream, pair, msq, saved is None) for pair in pairs]


def _source(stream: ModelStream, pair: Pair, msq: dict[str, float], fresh: bool) -> Source:
    """The trainer's view of one pair: its feed, each hook's statistic, the sample of the output space."""
    hook, target = pair
    stats = lambda h: {"mean_sq_norm": msq[h], "mean_sq_norm_no_bos": msq[h]}
    out = target or hook  # b_dec is in the output space
    sample = (lambda: np.asarray(stream.buffer[out])) if fresh else (lambda: None)
    return Source(
        StreamFeed(stream, pair),
        stats(hook),
        sample,
        lambda step: np.empty(0, np.int64),  # rows were checked finite when the buffer was filled
        lambda rows: rows[:0],
        None if target is None else stats(target),
    )
