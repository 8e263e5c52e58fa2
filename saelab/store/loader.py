"""ActivationLoader: globally shuffled, resumable, process-sharded training batches from a store.

The training stream is endless: epoch e visits every training token exactly once, in the order of a keyed
permutation for (seed, e) (`saelab.store.shuffle`), and epochs follow each other without a gap. Global
batch b is stream positions [b*B, (b+1)*B), so when B does not divide the token count a batch carries over
from the end of one epoch into the start of the next; nothing is dropped. The batch number is therefore
the whole iterator state.

Built on grain: a MapDataset over batch numbers, mapped to (rows, device array) with one vectorised memmap
gather per shard, and read ahead by grain's prefetch threads (which also do the host-to-device copy), so the
next batches already sit in device buffers while the current step runs (on CPU `jax.device_put` of the
aligned gathered array is zero-copy). The reader threads run at a lower scheduling priority (`reader_nice`):
on a machine whose cores all compute the step they take the time its single-threaded ops leave idle instead
of preempting one of XLA's compute threads, which would stall every parallel op of the step behind it.
"""

from __future__ import annotations

import os
import threading
from typing import Any, NamedTuple

import grain
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from saelab.store.reader import ActivationStore
from saelab.store.shuffle import permute

_MAX_BATCHES = 1 << 50  # the stream is endless; grain wants a length


class Batch(NamedTuple):
    x: jax.Array  # (batch, d_model): global and sharded over the mesh's "data" axis if given a mesh, else
    #               this process's rows (batch // process_count, d_model)
    idx: np.ndarray  # (rows of x this process holds,) int64 global store indices of those rows
    y: jax.Array | None = None  # like x, the target hook's activations at the same rows (transcoders)


class ActivationLoader:
    """Iterate `Batch`es of `batch_size` tokens (global, across processes) of one hook's activations.

    `indices` restricts training to those store indices (default: `store.train_indices(include_bos)`).
    `target_hook` adds that hook's activations at the same rows as `Batch.y` (a transcoder's target).
    `prefetch` batches are read ahead by `threads` threads, each at `reader_nice` more niceness than the
    process (0 keeps the process's priority).
    """

    def __init__(
        self,
        store: ActivationStore,
        hook: str,
        batch_size: int,
        *,
        seed: int = 0,
        include_bos: bool = False,
        mesh: Mesh | None = None,
        dtype: Any = np.float32,
        prefetch: int = 2,
        threads: int = 2,
        process_index: int | None = None,
        process_count: int | None = None,
        indices: np.ndarray | None = None,
        target_hook: str | None = None,
        reader_nice: int = 10,
    ) -> None:
        self.store = store
        self.hook = hook
        self.view = store.activations(hook)
        self.target_view = None if target_hook is None else store.activations(target_hook)
        self.indices = store.train_indices(include_bos) if indices is None else _check_indices(indices, store)
        if len(self.indices) == 0:
            raise ValueError(f"store {store.path} has no training tokens for {hook}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.seed = int(seed)
        self.dtype = np.dtype(dtype)
        self.mesh = mesh
        self._sharding = None if mesh is None else _data_sharding(mesh, batch_size)
        self._rows = self._local_rows(process_index, process_count)
        self._read = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch)
        if reader_nice < 0:
            raise ValueError(
                f"reader_nice must be >= 0 (raising a thread's priority needs privileges), got {reader_nice}"
            )
        self._nice = reader_nice
        self._niced = threading.local()
        self._step = 0
        self._it: Any = None  # started on the first next(), so set_state before it reads nothing twice

    @property
    def epoch_length(self) -> int:
        """Batches per epoch, rounded up (the last one carries over into the next epoch)."""
        return -(-len(self.indices) // self.batch_size)

    def global_indices(self, batch: int) -> np.ndarray:
        """(batch_size,) store indices of global batch number `batch`, all processes' rows."""
        n = len(self.indices)
        stream = np.arange(batch * self.batch_size, (batch + 1) * self.batch_size, dtype=np.int64)
        epoch, within = np.divmod(stream, n)
        out = np.empty_like(stream)
        for e in np.unique(epoch):
            sel = epoch == e
            out[sel] = self.indices[permute(within[sel], n, self.seed, int(e))]
        return out

    def __iter__(self) -> ActivationLoader:
        return self

    def __next__(self) -> Batch:
        if self._it is None:
            ds = grain.MapDataset.range(self._step, _MAX_BATCHES).map(self._load)
            self._it = iter(ds.to_iter_dataset(self._read))
        batch = next(self._it)
        self._step += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable position: restoring it with `set_state` continues with exactly the next batch."""
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "n_train": len(self.indices),
            "step": self._step,
            "epoch": self._step * self.batch_size // len(self.indices),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from a `get_state()` of a loader over the same store, seed and batch size."""
        mine = self.get_state()
        diff = [k for k in ("seed", "batch_size", "n_train") if state.get(k) != mine[k]]
        if diff:
            raise ValueError(
                "loader state does not fit this loader: "
                + ", ".join(f"{k} {state.get(k)} in the state, {mine[k]} here" for k in diff)
                + " (same store, include_bos, seed and batch size are needed to resume)"
            )
        self.close()
        self._step = int(state["step"])

    def close(self) -> None:
        """Stop the prefetch threads (also done when the loader is garbage collected)."""
        if self._it is not None:
            self._it.close()
            self._it = None

    def _load(self, batch: int) -> Batch:
        if (
            self._nice
            and not getattr(self._niced, "done", False)
            and threading.current_thread() is not threading.main_thread()
        ):
            _lower_priority(self._nice)
            self._niced.done = True
        idx = self.global_indices(batch)[self._rows[0] : self._rows[1]]
        x = self.view.take(idx, self.dtype)  # (local rows, d_model)
        y = None if self.target_view is None else self.target_view.take(idx, self.dtype)
        if self._sharding is None:
            return Batch(jax.device_put(x), idx, None if y is None else jax.device_put(y))
        put = lambda a: jax.make_array_from_process_local_data(self._sharding, a, (self.batch_size, a.shape[1]))
        return Batch(put(x), idx, None if y is None else put(y))

    def _local_rows(self, process_index: int | None, process_count: int | None) -> tuple[int, int]:
        """The rows [lo, hi) of each global batch this process loads."""
        if self._sharding is not None:
            if process_index is not None or process_count is not None:
                raise ValueError(
                    "give a mesh or process_index/process_count, not both: with a mesh, the "
                    "rows each process loads follow the mesh's devices"
                )
            return _addressable_rows(self._sharding, (self.batch_size, self.view.shape[1]))
        p = jax.process_index() if process_index is None else process_index
        n = jax.process_count() if process_count is None else process_count
        if not 0 <= p < n:
            raise ValueError(f"process_index {p} is not in [0, process_count={n})")
        if self.batch_size % n:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by {n} processes")
        local = self.batch_size // n
        return p * local, (p + 1) * local


def _lower_priority(nice: int) -> None:
    """Add `nice` to the calling thread's niceness (Linux: per thread; capped at 19). Where the system
    refuses, the thread keeps its priority: only the overlap with the step is lost, not a batch."""
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (OSError, AttributeError):
        pass


def _check_indices(indices: np.ndarray, store: ActivationStore) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be a 1-D integer array, got shape {idx.shape} dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= store.n_tokens):
        raise ValueError(f"indices must lie in [0, {store.n_tokens}) for store {store.path}")
    return idx.astype(np.int64)


def _data_sharding(mesh: Mesh, batch_size: int) -> NamedSharding:
    if "data" not in mesh.shape:
        raise ValueError(f"the mesh needs a 'data' axis to shard batches over; it has {tuple(mesh.shape)}")
    if batch_size % mesh.shape["data"]:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the mesh's data axis ({mesh.shape['data']} devices)"
        )
    return NamedSharding(mesh, P("data", None))


def _addressable_rows(sharding: NamedSharding, shape: tuple[int, int]) -> tuple[int, int]:
    """The contiguous block of batch rows that live on this process's devices."""
    spans = {s[0].indices(shape[0])[:2] for s in sharding.addressable_devices_indices_map(shape).values()}
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    if sum(b - a for a, b in spans) != hi - lo:
        raise ValueError(
            f"this process's devices hold non-contiguous batch rows {sorted(spans)}; order the "
            "mesh's devices by process (jax.make_mesh does)"
        )
    return lo, hi
