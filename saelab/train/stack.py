"""The one jitted step of a run: every SAE's train step on the same batch, in one XLA program (one SAE is
the case of a single-SAE run).

SAEs are grouped: with stacking on (`MultiTrainConfig.stack`), those whose steps are the same function (same
hook, input scale, SAE config, optimiser and bookkeeping; only the seed and the initial b_dec differ) train
as one `jax.vmap` of the step over stacked states; every other SAE is its own part of the program. Each
hook's batch is scaled once per input scale and shared by the groups reading it; the state stays one
`TrainState` per group (stacked along a leading axis for a vmapped group), so the step is donated and
updated in place as a single run's is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from saelab.train.config import TrainConfig
from saelab.train.state import TrainState
from saelab.train.step import Scale, scale_factor

StepFn = Callable[[TrainState, jax.Array, jax.Array | None], tuple[TrainState, dict[str, jax.Array]]]
Metrics = dict[str, jax.Array]

_INIT_ONLY = ("name", "seed", "b_dec_init")  # [train] fields that change an SAE's start, not its step


class Group(NamedTuple):
    """SAEs that share one step function; `stacked` ones train as a vmap over a leading state axis."""

    members: tuple[int, ...]  # indices of the SAEs (in the run's order)
    hook: int  # index of the hook whose batch they read
    scale: Scale  # input scale applied to that batch (a CLT's: one per layer)
    stacked: bool  # a vmapped group (two or more members, stacking on)


def group(cfgs: Sequence[TrainConfig], hooks: Sequence[int], scales: Sequence[Scale], stack: bool) -> list[Group]:
    """Groups of the SAEs, in order of their first member; with `stack` off every SAE is its own group."""
    keys: dict[str, list[int]] = {}
    for i, (cfg, hook, scale) in enumerate(zip(cfgs, hooks, scales, strict=True)):
        keys.setdefault(_step_key(cfg, hook, scale) if stack else str(i), []).append(i)
    return [Group(tuple(m), hooks[m[0]], scales[m[0]], len(m) > 1) for m in keys.values()]


def make_multi_step(groups: Sequence[Group], steps: Sequence[StepFn]) -> Callable[..., tuple[tuple, tuple]]:
    """(group states, one raw batch x (batch, d_in) per hook[, a transcoder's raw target y per hook, or None])
    -> (group states, group metrics). `steps` are the groups' train steps built with scale=1 (a target keeps
    its own scale): the batch is scaled here, once per (hook, scale). Pure; jit it with donation."""

    def multi(states: tuple[TrainState, ...], xs: tuple[jax.Array, ...], ys: tuple | None = None):
        scaled: dict[tuple[int, float], jax.Array] = {}
        new, metrics = [], []
        for g, step, state in zip(groups, steps, states, strict=True):
            key = (g.hook, g.scale)
            if key not in scaled:
                scaled[key] = xs[g.hook].astype(jnp.float32) * scale_factor(g.scale)  # (batch, d_in), as a run does
            y = None if ys is None else ys[g.hook]
            fn = jax.vmap(step, in_axes=(0, None, None)) if g.stacked else step
            state, m = fn(state, scaled[key], y)
            new.append(state)
            metrics.append(m)
        return tuple(new), tuple(metrics)

    return multi


def stack(states: Sequence[TrainState]) -> TrainState:
    """The states of one group along a new leading axis, each leaf sharded as before on the other axes."""

    def leaf(*a: jax.Array) -> jax.Array:
        s = a[0].sharding
        out = jnp.stack(a)
        if isinstance(s, NamedSharding):
            out = jax.device_put(out, NamedSharding(s.mesh, P(None, *s.spec)))
        return out

    return jax.tree.map(leaf, *states)


def member(state: TrainState, g: Group, i: int) -> TrainState:
    """The state of the `i`-th SAE of group `g` (a slice of a stacked state, or the state itself)."""
    return jax.tree.map(lambda a: a[i], state) if g.stacked else state


def member_metrics(host: Sequence[tuple[Metrics, ...]], groups: Sequence[Group]) -> list[list[Metrics]]:
    """Per SAE (in the run's order), the per-step metrics dicts of fetched group metrics `host`."""
    out: dict[int, list[Metrics]] = {}
    for gi, g in enumerate(groups):
        for i, j in enumerate(g.members):
            pick = (lambda m, i=i: {k: v[i] for k, v in m.items()}) if g.stacked else (lambda m: m)
            out[j] = [pick(step[gi]) for step in host]
    return [out[j] for j in range(len(out))]


def _step_key(cfg: TrainConfig, hook: int, scale: Scale) -> str:
    """What an SAE's step depends on: its whole config but the fields that only change its start."""
    d = cfg.model_dump(mode="json")
    d["train"] = {k: v for k, v in d["train"].items() if k not in _INIT_ONLY}
    d["data"].pop("hook")  # the resolved hook is `hook`
    return json.dumps([d, hook, scale], sort_keys=True)
