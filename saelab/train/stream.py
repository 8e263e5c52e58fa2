"""Training straight from the model (`data.source = "model"`): no store, the harvester's forward feeds the trainer.

Windows are packed from the corpus as a harvest packs them and run through the harvester's jitted forward
(`saelab.models.hooked_forward.forward_fn`, stopping after the deepest hooked block); the activations of positions
1.. (BOS left out, as the store's training indices leave it out) of every hook the run reads (each SAE's input, a
transcoder's target: one forward for all of them) go into a device-side shuffle buffer of `buffer_batches`
training batches, one array per hook, all permuted alike, so the rows of every hook pair up.
Each fill is permuted on the device by a key of (data.seed, fill number)
and drained batch by batch; then the buffer is refilled from where the stream stopped. A store shuffles the
whole harvest instead; `experiments/shuffle_quality.py` measures what the buffer gives up.

The iterator state is JSON: the fill number, the batches drawn from it, and the stream positions (epoch,
window, row) where the fill starts and where the next one starts. A resumed run re-runs the forwards of the
current fill (at most `buffer_batches` batches of tokens) from its start and permutes it with the same key,
so it draws exactly the batches an uninterrupted run draws. The input-scaling statistic (each hook's mean squared
norm) is estimated on the first fill and kept in that state, so a resumed run scales as the first run did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from saelab.data import open_corpus, pack_for_model
from saelab.models import Model, validate_hook_names
from saelab.models.hook_views import hook_width
from saelab.models.hooked_forward import forward_fn, pad_rows
from saelab.runtime.finite import NonFiniteError
from saelab.train.data_source import ModelData


class Position(NamedTuple):
    """A place in the endless activation stream: `row` rows into the forward batch starting at `window`."""

    epoch: int  # passes over the corpus completed
    window: int  # window index within the corpus
    row: int  # activation rows (BOS left out) already taken from the forward batch starting at `window`


def describe_source(data: ModelData) -> dict[str, Any]:
    """The manifest-like facts of an on-the-fly source (what the export and the evals read from a store's
    manifest): the model, corpus and window settings, the hook (and a transcoder's target) and their widths."""
    ck = load_model(data.model, data.model_dtype)
    hooks = [data.hook] + ([data.target_hook] if data.target_hook else [])
    validate_hook_names(hooks, ck.cfg.n_layers)
    meta = {
        "model": data.model,
        "weights_hash": ck.weights_hash,
        "model_dtype": data.model_dtype,
        "corpus": data.corpus,
        "split": data.split,
        "context": data.context,
        "within_document": data.within_document,
        "source": "model",
    }
    out = {"meta": meta, "hooks": hooks, "d_model": hook_width(ck.cfg, data.hook)}
    return out | ({"d_out": hook_width(ck.cfg, data.target_hook)} if data.target_hook else {})


def fill_permutation(seed: int, fill: int, size: int) -> jax.Array:
    """(size,) the order in which fill number `fill` of the buffer is drawn: batch i is rows [i*B, (i+1)*B)."""
    return jax.random.permutation(jax.random.fold_in(jax.random.key(seed), fill), size)


class ModelCache:
    """The models of on-the-fly runs and their jitted forwards (which hold the weights on the devices), kept so
    that a repeated or resumed run in the same process loads and compiles nothing again. They stay in memory
    until `clear()`: `saelab.train.stream.MODELS.clear()` frees them; a caller holding its own Model passes it
    to `ModelStream` instead and nothing is kept."""

    def __init__(self, max_models: int = 2, max_forwards: int = 4) -> None:
        self.max_models, self.max_forwards = max_models, max_forwards
        self._models: dict[tuple[str, str], Model] = {}
        self._forwards: dict[tuple[str, str, tuple[str, ...], int], Callable] = {}

    def model(self, name: str, dtype: str) -> Model:
        """`Model.load(name, dtype=dtype)`, loaded on first use; the oldest model (and its forwards) is dropped
        beyond `max_models`."""
        key = (name, dtype)
        if key not in self._models:
            while len(self._models) >= self.max_models:
                old = next(iter(self._models))
                del self._models[old]
                self._forwards = {k: f for k, f in self._forwards.items() if k[:2] != old}
            self._models[key] = Model.load(name, dtype=dtype)
        return self._models[key]

    def forward(self, name: str, dtype: str, hooks: tuple[str, ...], batch: int) -> Callable:
        """The harvester's jitted forward of `hooks` for the cached model (compiled once per settings)."""
        key = (name, dtype, hooks, batch)
        if key not in self._forwards:
            if len(self._forwards) >= self.max_forwards:
                del self._forwards[next(iter(self._forwards))]
            self._forwards[key] = forward_fn(self.model(name, dtype), hooks, jnp.float32, batch, {})
        return self._forwards[key]

    def clear(self) -> None:
        """Drop every model and forward, freeing their weights."""
        self._models.clear()
        self._forwards.clear()


MODELS = ModelCache()  # the on-the-fly runs' models in this process; MODELS.clear() frees them


def load_model(name: str, dtype: str) -> Model:
    """The model of an on-the-fly run, from `MODELS` (kept for the process until `MODELS.clear()`)."""
    return MODELS.model(name, dtype)


class ModelStream:
    """Endless shuffled batches {hook: (batch_size, d_hook)} of the activations of `hooks` at the same token
    positions, made by the model (one forward for every hook) as they are drawn."""

    def __init__(
        self, data: ModelData, hooks: str | tuple[str, ...], batch_size: int, mesh: Mesh, model: Model | None = None
    ) -> None:
        self.data = data
        self.hooks = (hooks,) if isinstance(hooks, str) else tuple(dict.fromkeys(hooks))
        self.model = model or load_model(data.model, data.model_dtype)
        if self.model.tokenizer is None or self.model.bos_id is None:
            raise ValueError(f"model {data.model} has no tokenizer with a BOS id; training from it needs both")
        self.corpus = open_corpus(data.corpus, split=data.split)
        self.batch_size = batch_size
        self.n_batches = data.buffer_batches
        if model is None:
            self._forward = MODELS.forward(data.model, data.model_dtype, self.hooks, data.model_batch)
        else:
            self._forward = forward_fn(model, self.hooks, jnp.float32, data.model_batch, {})
        sharding = NamedSharding(mesh, P("data", None))
        self._draw = jax.jit(
            lambda buf, perm, i: buf[jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)],
            out_shardings=sharding,
        )
        self.fill = -1  # the fill in the buffer
        self.drawn = self.n_batches  # batches drawn from it (all: the next draw fills)
        self.start = Position(0, 0, 0)  # where the current fill starts in the stream
        self.next = Position(0, 0, 0)  # where the next fill starts
        self.mean_sq_norm: dict[str, float] | None = None  # each hook's, from the first fill
        self.buffer: dict[str, jax.Array] | None = None  # {hook: (buffer_batches * batch_size, d_hook)}
        self._perm: jax.Array | None = None
        self._chunks: Iterator[tuple[Position, Rows]] | None = None
        self._carry: tuple[Position, Rows] | None = None  # the unused rows of the last forward
        self.steps = 0
        self.current: dict[str, jax.Array] | None = None  # the last draw (what `StreamFeed`s of it hand out)

    def prime(self) -> None:
        """Make the first fill now (a fresh run estimates its input scale and b_dec from it)."""
        if self.buffer is None and self.fill < 0:
            self._refill(0, Position(0, 0, 0))
            self.drawn = 0

    def __iter__(self) -> ModelStream:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        """The next batch of every hook: {hook: (batch_size, d_hook)}, the same token positions in each."""
        if self.drawn == self.n_batches:
            self._refill(self.fill + 1, self.next)
            self.drawn = 0
        elif self.buffer is None:  # resumed inside a fill: rebuild it exactly
            self._refill(self.fill, self.start)
        self.current = {h: self._draw(buf, self._perm, self.drawn) for h, buf in self.buffer.items()}
        self.drawn += 1
        self.steps += 1
        return self.current

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable: `set_state` on a stream of the same settings continues with the next batch."""
        return {
            "source": "model",
            "seed": self.data.seed,
            "batch_size": self.batch_size,
            "buffer_batches": self.n_batches,
            "model_batch": self.data.model_batch,
            "context": self.data.context,
            "fill": self.fill,
            "drawn": self.drawn,
            "start": list(self.start),
            "next": list(self.next),
            "mean_sq_norm": self.mean_sq_norm,
            "step": self.steps,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from a `get_state()`; the current fill is rebuilt on the next draw."""
        mine = self.get_state()
        keys = ("source", "seed", "batch_size", "buffer_batches", "model_batch", "context")
        diff = [k for k in keys if state.get(k) != mine[k]]
        if diff:
            raise ValueError(
                "stream state does not fit this run: "
                + ", ".join(f"{k} {state.get(k)} in the state, {mine[k]} here" for k in diff)
                + " (resume with the data settings the run started with)"
            )
        self.fill, self.drawn, self.steps = int(state["fill"]), int(state["drawn"]), int(state["step"])
        self.start, self.next = Position(*state["start"]), Position(*state["next"])
        msq = state["mean_sq_norm"]  # a float in the states of runs that read one hook
        self.mean_sq_norm = {self.hooks[0]: msq} if isinstance(msq, float) else msq
        self.buffer = self._perm = self._chunks = self._carry = self.current = None

    def close(self) -> None:
        self._chunks = self._carry = None

    def _refill(self, fill: int, start: Position) -> None:
        """Fill the buffer with the stream's rows from `start` and permute it with the key of `fill`."""
        need = self.n_batches * self.batch_size
        parts: list[Rows] = []
        rows_from = self._rows_from(start)
        for pos, rows in rows_from:
            n = _n_rows(rows)
            take = min(need, n)
            parts.append({h: r[:take] for h, r in rows.items()})
            need -= take
            if need == 0:
                self._carry = (
                    (pos._replace(row=pos.row + take), {h: r[take:] for h, r in rows.items()}) if take < n else None
                )
                break
        if self._carry is None:
            self._carry = next(rows_from)  # the next fill's start is the next forward batch's
        buffer = {h: jnp.concatenate([p[h] for p in parts]) if len(parts) > 1 else parts[0][h] for h in self.hooks}
        for h, b in buffer.items():  # (buffer rows, d_hook)
            if not bool(jnp.isfinite(b).all()):
                raise NonFiniteError(
                    f"train: the model's {h} activations of fill {fill} (from corpus window {start.window} of "
                    f"epoch {start.epoch}) hold NaN or Inf; train with data.model_dtype='float32', or harvest a "
                    "store with on_nonfinite='skip'"
                )
        self.fill, self.start, self.next = fill, start, self._carry[0]
        self.buffer = buffer
        if self.mean_sq_norm is None:
            self.mean_sq_norm = {h: float(jnp.mean(jnp.sum(jnp.square(b), axis=1))) for h, b in buffer.items()}
        self._perm = fill_permutation(self.data.seed, fill, _n_rows(buffer))

    def _rows_from(self, start: Position) -> Iterator[tuple[Position, Rows]]:
        """(position, rows) of the stream from `start`: the carried tail when it starts there (the
        uninterrupted path), else the forwards re-run from the start's window (a resume)."""
        if self._carry is not None and self._carry[0] == start:
            yield self._carry
            self._carry = None
        else:
            self._chunks = self._forwards(start.epoch, start.window)
            pos, rows = next(self._chunks)
            yield start, {h: r[start.row :] for h, r in rows.items()}
        for item in self._chunks:  # noqa: UP028 - `yield from` would close the forwards with this generator
            yield item

    def _forwards(self, epoch: int, window: int) -> Iterator[tuple[Position, Rows]]:
        """Forward batches of `model_batch` windows from `window`, epoch after epoch: (position, {hook: (n, d)})."""
        d, mb, ctx = self.data, self.data.model_batch, self.data.context
        while True:
            empty = True
            for b in pack_for_model(
                self.corpus, self.model, context=ctx, batch=mb, within_document=d.within_document, skip_windows=window
            ):
                empty = False
                n = len(b.tokens)
                acts, _ = self._forward(pad_rows(b.tokens, mb))
                # each hook's (windows, context - 1, d): BOS left out
                rows = {h: acts[h].reshape(mb, ctx, -1)[:n, 1:].reshape(n * (ctx - 1), -1) for h in self.hooks}
                yield Position(epoch, window, 0), rows
                window += n
            if empty and window == 0:
                raise ValueError(f"corpus {d.corpus} ({d.split} split) gives no window of {ctx} tokens to train on")
            epoch, window = epoch + 1, 0


Rows = dict[str, jax.Array]  # {hook: (n, d_hook)}: rows of the same token positions in every hook


def _n_rows(rows: Rows) -> int:
    return next(iter(rows.values())).shape[0]
