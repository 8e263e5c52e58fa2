"""`run(cfg)`: train several SAEs on the same batches in one run (`MultiTrainConfig`, a `[[saes]]` list).

Each batch is read from the store once per hook and scaled once per input scale; one jitted step
(`saelab.train.multi.stack`) updates every SAE. Each SAE still has everything a single run has, in its own run
directory `train.out/train.name/<sae name>/` (config.json, orbax checkpoints, metrics.jsonl, wandb, the
SAELens-format export), so `saelab eval`, `inspect` and `train --resume` take a sub-run as they take any
run. The parent directory holds `multi.json`. Resume is exact: every SAE restarts from the last step all
of them checkpointed, with the loaders at that step.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.runtime.distributed import is_main, put, to_host
from saelab.runtime.progress import progress_bar
from saelab.runtime.rundir import RunDir
from saelab.sae import check_finite
from saelab.store import ActivationLoader, ActivationStore
from saelab.train import checkpoint
from saelab.train.config import Resolved, TrainConfig, resolve
from saelab.train.mesh import check_divisible, make_mesh
from saelab.train.multi.config import MultiTrainConfig
from saelab.train.multi.stack import Group, group, make_multi_step, member, member_metrics, stack
from saelab.train.run import (
    MetricsLog,
    Throughput,
    TrainResult,
    check_store_stats,
    claim_dir,
    initial_b_dec,
    initial_state,
    input_scale,
    make_guard,
    prepare_run_dir,
    store_sample,
    store_source,
)
from saelab.train.sae_export import export
from saelab.train.state import TrainState
from saelab.train.step import make_train_step


class MultiTrainResult(NamedTuple):
    run_dir: Path  # the parent directory (multi.json)
    saes: dict[str, TrainResult]  # each SAE's result, by its name, in config order
    steps: int
    tokens_per_s: float  # training tokens per second of the shared batches (compilation excluded)
    start_step: int = 0  # the step this invocation started from (the restored checkpoint's when resuming)


def run(
    cfg: MultiTrainConfig, *, resume: bool = False, overwrite: bool = False, stop_at_step: int | None = None
) -> MultiTrainResult:
    """Train (or continue with resume=True) the multi-SAE run `cfg.run_dir`. `stop_at_step` checkpoints and
    returns early, as an interruption would."""
    cfgs = cfg.members()
    rs = [resolve(c) for c in cfgs]
    _prepare_parent(RunDir(cfg.run_dir), cfg, resume, overwrite)
    dirs = [RunDir(c.run_dir) for c in cfgs]
    for d, c in zip(dirs, cfgs, strict=True):
        prepare_run_dir(d, c, resume, overwrite=False)
    store = ActivationStore(cfg.data.store)
    hooks = list(dict.fromkeys(r.hook for r in rs))  # each hook once, in config order
    for h in hooks:
        check_store_stats(store, h)
    mesh = make_mesh(cfg.train.mesh_data, cfg.train.mesh_model)
    for r in rs:
        check_divisible(mesh, r.sae.d_sae, cfg.data.batch_size)
    scales = [
        input_scale(store.stats(r.hook), c.train.input_scaling, r.sae.d_in) for c, r in zip(cfgs, rs, strict=True)
    ]
    made = [initial_state(r.sae, c, mesh, b) for c, r, b in _initial_b_decs(store, cfgs, rs, scales)]
    states, txs = [s for s, _ in made], [tx for _, tx in made]
    loaders = [
        ActivationLoader(store, h, cfg.data.batch_size, seed=cfg.data.seed, include_bos=cfg.data.include_bos, mesh=mesh)
        for h in hooks
    ]
    mngrs = [checkpoint.manager(d.checkpoints, cfg.train.keep_checkpoints) for d in dirs]
    start = 0
    if resume:
        restored = _restore(mngrs, states)
        if restored is not None:
            states, loader_state, start = restored
            for loader in loaders:
                loader.set_state(loader_state)
    groups = group(cfgs, [hooks.index(r.hook) for r in rs], scales, cfg.stack)
    steps = [_step(cfgs[g.members[0]], rs[g.members[0]], txs[g.members[0]]) for g in groups]
    gstates = tuple(stack([states[j] for j in g.members]) if g.stacked else states[g.members[0]] for g in groups)
    shardings = jax.tree.map(lambda a: a.sharding, gstates)
    step_fn = jax.jit(make_multi_step(groups, steps), donate_argnums=0, out_shardings=(shardings, None))
    if cfg.train.wandb != "disabled":
        _wandb_runs_side_by_side()
    logs = [MetricsLog(d, start, c) for d, c in zip(dirs, cfgs, strict=True)]
    loader_of = [loaders[hooks.index(r.hook)] for r in rs]
    guards = [
        make_guard(c, store_source(store, lo, r, c), m) for c, r, lo, m in zip(cfgs, rs, loader_of, mngrs, strict=True)
    ]
    end = cfg.steps if stop_at_step is None else min(stop_at_step, cfg.steps)
    timer = Throughput()
    last: list[dict[str, float]] = [{} for _ in cfgs]
    log_every, ckpt_every = cfg.train.log_every, cfg.train.checkpoint_every
    with progress_bar("step/s", cfg.train.progress and is_main()) as bar:
        task = bar.add_task(f"train {cfg.train.name} ({len(cfgs)} SAEs)", total=cfg.steps, completed=start, info="")
        pending, fetched = [], [[] for _ in cfgs]  # the log window's metrics: on the device; per SAE on the host
        for s in range(start, end):
            xs = tuple(next(loader).x for loader in loaders)
            gstates, m = step_fn(gstates, xs)
            pending.append(m)
            timer.tick(s == start, cfg.data.batch_size)
            done = s + 1
            if done % log_every == 0 or done % ckpt_every == 0 or done == end:
                first = done - len(pending) + len(fetched[0])
                new = member_metrics(jax.device_get(pending[len(fetched[0]) :]), groups)
                for j, guard in enumerate(guards):
                    fetched[j] += guard.check(first, new[j])
            if done % log_every == 0 or done == end:
                gstates, last = _write_logs(logs, done, fetched, gstates, groups, cfgs, timer.rate())
                pending, fetched = [], [[] for _ in cfgs]
                evs = [row["explained_variance"] for row in last]
                bar.update(task, info=f"EV {min(evs):.3f}..{max(evs):.3f}")
            if done % ckpt_every == 0 or done == end:
                state_of = _members(gstates, groups)
                for j, mngr in enumerate(mngrs):
                    checkpoint.save(mngr, done, state_of[j], loaders[0].get_state())
            bar.update(task, completed=done)
    for mngr in mngrs:
        mngr.wait_until_finished()
    results = {}
    for j, (c, r, d, state) in enumerate(zip(cfgs, rs, dirs, _members(gstates, groups), strict=True)):
        params = to_host(state.params)
        check_finite(params, f"of run {d.root} at step {end}")
        if end == cfg.steps and is_main():
            export(params, r, scales[j], d.sae, c)
        logs[j].close()
        results[cfg.saes[j].name] = TrainResult(d.root, d.sae, end, last[j], timer.rate(), params, start)
    return MultiTrainResult(cfg.run_dir, results, end, timer.rate(), start)


def _step(cfg: TrainConfig, r: Resolved, tx):
    """One SAE's train step on an already scaled batch (the multi step scales each batch once)."""
    return make_train_step(
        r.sae,
        tx,
        scale=1.0,
        dead_tokens=cfg.train.dead_tokens,
        sparsity_warmup_steps=cfg.optim.coefficient_warmup_steps,
    )


def _initial_b_decs(store: ActivationStore, cfgs: list[TrainConfig], rs: list[Resolved], scales: list[float]):
    """(cfg, resolved, initial b_dec) per SAE; SAEs with the same hook, scale, seed and rule share one."""
    done: dict[tuple, jax.Array | None] = {}
    for c, r, scale in zip(cfgs, rs, scales, strict=True):
        key = (r.hook, scale, c.train.seed, c.train.b_dec_init, c.train.on_nonfinite)
        if key not in done:
            done[key] = initial_b_dec(lambda r=r, c=c: store_sample(store, r, c), c, scale)
        b_dec = done[key]
        yield c, r, None if b_dec is None else jnp.copy(b_dec)  # its own buffer: every state is donated


def _members(gstates: tuple[TrainState, ...], groups: list[Group]) -> list[TrainState]:
    """Each SAE's state (in the run's order), sliced out of the group states."""
    out: dict[int, TrainState] = {}
    for g, state in zip(groups, gstates, strict=True):
        for i, j in enumerate(g.members):
            out[j] = member(state, g, i)
    return [out[j] for j in range(len(out))]


def _write_logs(logs, step, fetched, gstates, groups, cfgs, rate):
    """Each SAE's metrics row for the window (its own metrics.jsonl and wandb), then reset every group's
    firing counts; returns (group states, rows in the run's order)."""
    rows: dict[int, dict[str, float]] = {}
    new = []
    for g, state in zip(groups, gstates, strict=True):
        for i, j in enumerate(g.members):
            view = state._replace(window_counts=state.window_counts[i]) if g.stacked else state
            _, rows[j] = logs[j].write(step, fetched[j], view, cfgs[j], rate)
        counts = state.window_counts
        new.append(state._replace(window_counts=put(np.zeros(counts.shape, np.float32), counts.sharding)))
    return tuple(new), [rows[j] for j in range(len(rows))]


def _restore(mngrs, likes: list[TrainState]) -> tuple[list[TrainState], dict, int] | None:
    """Every SAE's state at the last step all of them checkpointed (a run killed while saving may have
    written some SAEs' newer checkpoint only; those are removed), and the loader state there."""
    steps = set.intersection(*(set(m.all_steps()) for m in mngrs))
    step = max(steps) if steps else None
    for m in mngrs:
        for s in m.all_steps():
            if step is None or s > step:
                m.delete(s)
    if step is None:
        return None
    out = [checkpoint.restore(m, like, step) for m, like in zip(mngrs, likes, strict=True)]
    loader_states = [o[1] for o in out]
    if any(ls != loader_states[0] for ls in loader_states):
        raise ValueError(
            f"the SAEs' checkpoints of step {step} hold different loader positions: not one multi-SAE run; "
            "start it again with --overwrite"
        )
    return [o[0] for o in out], loader_states[0], step


def _wandb_runs_side_by_side() -> None:
    """Let each SAE's `wandb.init` open its own run: by default a second init in one process returns the
    run already open, and every SAE would log into the first one's."""
    import wandb

    wandb.setup(wandb.Settings(reinit="create_new"))


def _prepare_parent(parent: RunDir, cfg: MultiTrainConfig, resume: bool, overwrite: bool) -> None:
    """Check the parent directory on every process, then process 0 alone (re)creates it with multi.json."""
    if parent.is_run():
        raise ValueError(f"{parent.root} is a single-SAE run; give the multi-SAE run another train.name")
    claim_dir(parent.root, parent.multi_config, cfg.dump(), resume, overwrite, "multi-SAE run", "saelab-train-multi")
