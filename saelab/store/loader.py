"""ActivationLoader: globally shuffled, resumable, process-sharded training batches from a store.

Built on grain: a MapDataset over batch numbers of the (endless) shuffled token stream, mapped to
activations with one vectorised memmap gather per shard, prefetched by grain's reader threads. The state
is grain's iterator state (the next batch number), JSON-serialisable for checkpoints.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import grain
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from saelab.store.reader import ActivationStore
from saelab.store.shuffle import permute

_MAX_BATCHES = 1 << 40  # the stream is endless; grain wants a length


class Batch(NamedTuple):
    x: jax.Array  # (batch, d_model), this process's rows when not given a mesh; global when given one
    idx: np.ndarray  # (local batch,) global store indices of this process's rows


class ActivationLoader:
    """Iterate `Batch`es of `batch_size` tokens (global, across processes) of one hook's activations."""

    def __init__(
        self, store: ActivationStore, hook: str, batch_size: int, *, seed: int = 0, include_bos: bool = False,
        mesh: Mesh | None = None, dtype: Any = np.float32, prefetch: int = 4, threads: int = 2,
        process_index: int | None = None, process_count: int | None = None, indices: np.ndarray | None = None,
    ) -> None:
        self.store = store
        self.hook = hook
        self.view = store.activations(hook)
        self.indices = store.train_indices(include_bos) if indices is None else np.asarray(indices, np.int64)
        if len(self.indices) == 0:
            raise ValueError(f"store {store.path} has no training tokens for {hook}")
        self.batch_size = batch_size
        self.seed = seed
        self.mesh = mesh
        self.dtype = dtype
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if batch_size % self.process_count:
            raise ValueError(f"batch_size {batch_size} is not divisible by {self.process_count} processes")
        self.local = batch_size // self.process_count
        ds = grain.MapDataset.range(_MAX_BATCHES).map(self._load)
        self._ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch))
        self._it = iter(self._ds)

    @property
    def epoch_length(self) -> int:
        """Batches per epoch (an epoch ends mid-batch when the batch size does not divide it)."""
        return -(-len(self.indices) // self.batch_size)

    def global_indices(self, batch: int) -> np.ndarray:
        """Store indices of global batch number `batch` (all processes' rows)."""
        n = len(self.indices)
        stream = np.arange(batch * self.batch_size, (batch + 1) * self.batch_size, dtype=np.int64)
        epoch, within = stream // n, stream % n
        out = np.empty_like(stream)
        for e in np.unique(epoch):
            sel = epoch == e
            out[sel] = self.indices[permute(within[sel], n, self.seed, int(e))]
        return out

    def _load(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.global_indices(batch)[self.process_index * self.local:(self.process_index + 1) * self.local]
        return self.view[idx].astype(self.dtype), idx

    def __iter__(self) -> ActivationLoader:
        return self

    def __next__(self) -> Batch:
        x, idx = next(self._it)
        if self.mesh is not None:
            sharding = NamedSharding(self.mesh, P("data", None))
            return Batch(jax.make_array_from_process_local_data(sharding, x, (self.batch_size, x.shape[1])), idx)
        return Batch(jax.device_put(x), idx)

    def get_state(self) -> dict[str, Any]:
        return {"seed": self.seed, "batch_size": self.batch_size, "grain": self._it.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        if state["seed"] != self.seed or state["batch_size"] != self.batch_size:
            raise ValueError(f"loader state is for seed {state['seed']} and batch {state['batch_size']}, this "
                             f"loader has seed {self.seed} and batch {self.batch_size}")
        self._it.set_state(state["grain"])
