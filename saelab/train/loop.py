"""The one training loop: one or several SAEs (`Member`s) on the same batches, one jitted step for all of them.

A single-SAE run (`saelab.train.run`) is the one-member case of a multi-SAE run (`saelab.train.multi.run`):
both hand their members and batch feeds here. Every member keeps a normal run directory (orbax checkpoints,
metrics.jsonl, wandb, the export). Resume is exact: every member restarts from the last step all of them
checkpointed, with the feeds at that step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from saelab.runtime.distributed import is_main, put, to_host
from saelab.runtime.progress import progress_bar
from saelab.runtime.rundir import RunDir
from saelab.sae import CLTParams, SAEParams
from saelab.train import checkpoint
from saelab.train.config import Resolved, TrainConfig
from saelab.train.evaluate import InTrainingEval
from saelab.train.guard import Guard
from saelab.train.init_b_dec import initial_b_dec
from saelab.train.metrics_log import MetricsLog, side_by_side
from saelab.train.placement import initial_state
from saelab.train.sae_export import check_trained_finite, export
from saelab.train.source import Source
from saelab.train.stack import Group, group, make_multi_step, member, member_metrics, stack
from saelab.train.state import TrainState
from saelab.train.step import Scale, make_train_step
from saelab.train.throughput import Throughput


class Member(NamedTuple):
    """One SAE of a run: its config, where it lives, what it reads and how its inputs are scaled."""

    cfg: TrainConfig
    r: Resolved
    run_dir: RunDir
    source: Source  # its batch source's statistics, b_dec sample and fault rows
    feed: int  # index of the feed (loader) whose batches it trains on
    scale: Scale  # input scale (a CLT's: one per layer)
    out_scale: Scale | None = None  # a transcoder's target scale (its own hook's); None: the input scale


class TrainResult(NamedTuple):
    run_dir: Path
    export_dir: Path
    steps: int
    metrics: dict[str, float]  # the last logged metrics
    tokens_per_s: float  # training throughput of this invocation (compilation excluded)
    params: SAEParams | CLTParams  # final parameters in the training (input-scaled) space, on the host
    start_step: int = 0  # the step this invocation started from (the restored checkpoint's when resuming)


class LoopResult(NamedTuple):
    results: list[TrainResult]  # each member's, in the run's order
    steps: int  # the step reached
    tokens_per_s: float
    start_step: int


class _Run(NamedTuple):
    """The loop's fixed parts, made before the first step."""

    members: Sequence[Member]
    feeds: Sequence[Any]  # loaders: iterators of Batch with get_state() / set_state()
    groups: list[Group]
    step_fn: Any  # jitted (group states, xs, ys) -> (group states, group metrics)
    mngrs: list
    logs: list[MetricsLog]
    guards: list[Guard]
    evals: list[InTrainingEval | None]


def train(
    members: Sequence[Member],
    feeds: Sequence[Any],
    mesh: Mesh,
    *,
    title: str,
    resume: bool,
    stop_at_step: int | None,
    stack_equal: bool = False,
) -> LoopResult:
    """Train every member from step 0 (or the last common checkpoint with resume=True) to the end of the run,
    or to `stop_at_step` (checkpointed, as an interruption would leave it); export each at the end."""
    cfg = members[0].cfg  # the loop's settings (steps, logging, checkpoints) are every member's
    states, txs = _initial_states(members, mesh)
    mngrs = [checkpoint.manager(m.run_dir.checkpoints, cfg.train.keep_checkpoints) for m in members]
    start = 0
    if resume:
        restored = _restore(mngrs, states)
        if restored is not None:
            states, loader_state, start = restored
            for feed in feeds:
                feed.set_state(loader_state)
    groups = group([m.cfg for m in members], [m.feed for m in members], [m.scale for m in members], stack_equal)
    gstates = tuple(stack([states[j] for j in g.members]) if g.stacked else states[g.members[0]] for g in groups)
    steps = [_step(members[g.members[0]], txs[g.members[0]]) for g in groups]
    shardings = jax.tree.map(lambda a: a.sharding, gstates)
    step_fn = jax.jit(make_multi_step(groups, steps), donate_argnums=0, out_shardings=(shardings, None))
    if cfg.train.wandb != "disabled" and len(members) > 1:
        side_by_side()
    run = _Run(
        members,
        feeds,
        groups,
        step_fn,
        mngrs,
        [MetricsLog(m.run_dir, start, m.cfg) for m in members],
        [_guard(m.cfg, m.source, mngr) for m, mngr in zip(members, mngrs, strict=True)],
        [InTrainingEval(m.cfg, m.r, m.scale, m.out_scale) if m.cfg.train.eval_every else None for m in members],
    )
    end = cfg.steps if stop_at_step is None else min(stop_at_step, cfg.steps)
    timer = Throughput()
    gstates, last = _steps(run, gstates, start, end, timer, title)
    return LoopResult(_finish(run, gstates, end, last, timer.rate(), start), end, timer.rate(), start)


def _steps(run: _Run, gstates: tuple, start: int, end: int, timer: Throughput, title: str):
    """Steps start..end-1: fetch and check metrics before each log and checkpoint, log, checkpoint."""
    cfg = run.members[0].cfg
    n = len(run.members)
    log_every, ckpt_every = cfg.train.log_every, cfg.train.checkpoint_every
    last: list[dict[str, float]] = [{} for _ in run.members]
    with progress_bar("step/s", cfg.train.progress and is_main()) as bar:
        task = bar.add_task(title, total=cfg.steps, completed=start, info="")
        pending, fetched = [], [[] for _ in range(n)]  # the log window's metrics: on the device; per SAE on the host
        for s in range(start, end):
            batches = [next(feed) for feed in run.feeds]
            ys = tuple(b.y for b in batches)
            gstates, m = run.step_fn(gstates, tuple(b.x for b in batches), None if all(y is None for y in ys) else ys)
            pending.append(m)
            timer.tick(s == start, cfg.data.batch_size)
            done = s + 1
            if done % log_every == 0 or done % ckpt_every == 0 or done == end:
                first = done - len(pending) + len(fetched[0])
                new = member_metrics(jax.device_get(pending[len(fetched[0]) :]), run.groups)
                for j, guard in enumerate(run.guards):
                    fetched[j] += guard.check(first, new[j])
            if done % log_every == 0 or done == end:
                gstates, last = _write_logs(run, done, fetched, gstates, timer.rate())
                pending, fetched = [], [[] for _ in range(n)]
                bar.update(task, info=_progress_info(last))
            if done % ckpt_every == 0 or done == end:
                for state, mngr in zip(_members(gstates, run.groups), run.mngrs, strict=True):
                    checkpoint.save(mngr, done, state, run.feeds[0].get_state())
            bar.update(task, completed=done)
    for mngr in run.mngrs:
        mngr.wait_until_finished()
    return gstates, last


def _finish(run: _Run, gstates: tuple, end: int, last: list[dict[str, float]], rate: float, start: int):
    """Each member's parameters brought to the host and checked, its export written at the run's end."""
    results = []
    for j, (m, state) in enumerate(zip(run.members, _members(gstates, run.groups), strict=True)):
        params = to_host(state.params)  # gathered from every process when latents span processes
        check_trained_finite(params, f"of run {m.run_dir.root} at step {end}")
        if end == m.cfg.steps and is_main():
            export(params, m.r, m.scale, m.run_dir.sae, m.cfg, m.out_scale, m.source.calibration)
        run.logs[j].close()
        results.append(TrainResult(m.run_dir.root, m.run_dir.sae, end, last[j], rate, params, start))
    return results


def _progress_info(last: list[dict[str, float]]) -> str:
    """The progress bar's note: one SAE's EV, L0 and dead fraction, or the range of EVs of several."""
    if len(last) == 1:
        row = last[0]
        return f"EV {row['explained_variance']:.3f} L0 {row['l0']:.1f} dead {row['dead_fraction']:.3f}"
    evs = [row["explained_variance"] for row in last]
    return f"EV {min(evs):.3f}..{max(evs):.3f}"


def _initial_states(members: Sequence[Member], mesh: Mesh) -> tuple[list[TrainState], list]:
    """Each member's step-0 state and optimiser; members with the same sample, scale, seed and rule share one
    initial b_dec computation."""
    done: dict[tuple, jax.Array | None] = {}
    states, txs = [], []
    for m in members:
        c, scale = m.cfg, m.scale if m.out_scale is None else m.out_scale  # b_dec is in the output space
        key = (m.feed, m.r.target_hook or m.r.hook, scale, c.train.seed, c.train.b_dec_init, c.train.on_nonfinite)
        if key not in done:
            done[key] = initial_b_dec(m.source.b_dec_sample, c, scale)
        b_dec = done[key]
        state, tx = initial_state(m.r.sae, c, mesh, None if b_dec is None else jnp.copy(b_dec))
        states.append(state)  # each its own b_dec buffer: every state is donated
        txs.append(tx)
    return states, txs


def _step(m: Member, tx):
    """A member's train step on a batch already scaled by its input scale (the run's step scales each batch
    once); a transcoder's target is scaled in the step by its own scale."""
    return make_train_step(
        m.r.sae,
        tx,
        scale=1.0,
        out_scale=m.scale if m.out_scale is None else m.out_scale,
        dead_tokens=m.cfg.train.dead_tokens,
        sparsity_warmup_steps=m.cfg.optim.coefficient_warmup_steps,
    )


def _guard(cfg: TrainConfig, src: Source, mngr) -> Guard:
    """The fault checks of a member: which rows a step read, which of them are not finite, what is kept."""

    def kept() -> str:
        mngr.wait_until_finished()  # the checkpoint in flight, if any, is whole before the run stops
        step = mngr.latest_step()
        if step is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint (step {step}) is kept"

    return Guard(cfg.train.on_nonfinite, src.rows, src.bad_rows, kept)


def _members(gstates: tuple[TrainState, ...], groups: list[Group]) -> list[TrainState]:
    """Each SAE's state (in the run's order), sliced out of the group states."""
    out: dict[int, TrainState] = {}
    for g, state in zip(groups, gstates, strict=True):
        for i, j in enumerate(g.members):
            out[j] = member(state, g, i)
    return [out[j] for j in range(len(out))]


def _write_logs(run: _Run, step: int, fetched, gstates: tuple, rate: float):
    """Each SAE's metrics row for the window (with its held-out evals when due), then reset every group's
    firing counts; returns (group states, rows in the run's order)."""
    rows: dict[int, dict[str, float]] = {}
    new = []
    for g, state in zip(run.groups, gstates, strict=True):
        for i, j in enumerate(g.members):
            m, evaluate = run.members[j], run.evals[j]
            evals = evaluate(member(state, g, i).params) if evaluate and step % m.cfg.train.eval_every == 0 else {}
            counts = to_host(state.window_counts[i] if g.stacked else state.window_counts)
            rows[j] = run.logs[j].write(step, fetched[j], counts, m.cfg, rate, evals)
        counts = state.window_counts
        new.append(state._replace(window_counts=put(np.zeros(counts.shape, np.float32), counts.sharding)))
    return tuple(new), [rows[j] for j in range(len(rows))]


class _Resumed(NamedTuple):
    """Every member's restored state, the feeds' state and the step they are all at."""

    states: list[TrainState]
    loader: dict[str, Any]
    step: int


def _restore(mngrs, likes: list[TrainState]) -> _Resumed | None:
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
    loader_states = [o.loader for o in out]
    if any(ls != loader_states[0] for ls in loader_states):
        raise ValueError(
            f"the SAEs' checkpoints of step {step} hold different loader positions: not one multi-SAE run; "
            "start it again with --overwrite"
        )
    return _Resumed([o.state for o in out], loader_states[0], step)
