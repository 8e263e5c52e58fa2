"""The hooked forward that feeds activations to a store or a trainer: tokens in, the hook points' rows out.

One jitted forward per (model, hooks, dtype, batch) that stops after the deepest hooked block and returns each
hook's activations in the SAE's row view, cast to the storage dtype, with a per-window finiteness flag. The
harvester writes its output to a store; the on-the-fly trainer (`saelab.train.stream`) trains on it directly.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from saelab.models.compile_options import forward_options
from saelab.models.hook_views import hook_width, sae_input
from saelab.models.hooks import HookContext, HookFn, stop_layer
from saelab.models.model import Model
from saelab.models.transformer import forward


def forward_fn(model: Model, hooks: tuple[str, ...], dtype: jnp.dtype, batch: int, interventions: dict[str, HookFn]):
    """Jitted tokens (batch, context) -> ({hook: (tokens, width) in storage dtype}, (batch,) bool: every value of
    the window finite after the cast to storage dtype), stopping at the deepest hook.

    Data-parallel over this process's devices (a TPU host's chips, a node's GPUs): the weights are replicated
    and the windows split evenly, when the devices divide `batch`; otherwise on one device.
    """
    stop = stop_layer(hooks, model.cfg.n_layers)
    local = jax.local_devices()
    n = len(local) if batch % len(local) == 0 else 1
    if n < len(local):
        print(f"forward: batch {batch} is not a multiple of this process's {len(local)} devices; using one")
    mesh = Mesh(np.asarray(local[:n]), ("data",))
    params = jax.device_put(model.params, NamedSharding(mesh, P()))

    shardings = (NamedSharding(mesh, P()), NamedSharding(mesh, P("data", None)))

    @partial(jax.jit, in_shardings=shardings, compiler_options=forward_options())
    def run(params, tokens):
        _, cache = forward(params, model.cfg, tokens, None, HookContext(interventions, cache=hooks), stop)
        acts = {h: _rows(sae_input(cache[h])).astype(dtype) for h in hooks}
        finite = jnp.stack([jnp.isfinite(a.reshape(tokens.shape[0], -1)).all(1) for a in acts.values()]).all(0)
        return acts, finite

    return partial(run, params)


def pad_rows(x: np.ndarray, n: int) -> np.ndarray:
    """Pad a short last batch to the compiled batch size (the extra rows are dropped after the forward)."""
    if len(x) == n:
        return x
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)])


def store_width(model: Model, hooks: list[str]) -> int:
    """The one width the hooks of a store share (saelab.models.hook_views.hook_width of each)."""
    widths = {h: hook_width(model.cfg, h) for h in hooks}
    if len(set(widths.values())) > 1:
        raise ValueError(f"hooks of different widths cannot share a store: {widths}; harvest them separately")
    return next(iter(widths.values()))


def _rows(a: jax.Array) -> jax.Array:
    """(batch, seq, width) -> (batch * seq, width): one stored row per token."""
    return a.reshape(-1, a.shape[-1])
