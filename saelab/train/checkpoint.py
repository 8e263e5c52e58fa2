"""Orbax checkpoints of a run: the train state (sharded arrays) plus the loader's JSON state.

Saved with a CheckpointManager (atomic: a checkpoint directory appears only when complete), restored into
the shardings of the current mesh, so a run saved on N devices or processes restores on M.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp

from saelab.train.state import TrainState


class Restored(NamedTuple):
    """A checkpoint read back: the train state, the loader's JSON state and the step they are at."""

    state: TrainState
    loader: dict[str, Any]
    step: int


def manager(directory: Path, keep: int) -> ocp.CheckpointManager:
    """Orbax's manager over `directory` (a run's `RunDir.checkpoints`), keeping the last `keep` steps."""
    return ocp.CheckpointManager(
        directory.absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
    )


def save(mngr: ocp.CheckpointManager, step: int, state: TrainState, loader_state: dict[str, Any]) -> None:
    """Start writing checkpoint `step` (asynchronously); a failed write (a full disk) names the fix."""
    try:
        mngr.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), loader=ocp.args.JsonSave(loader_state)),
            force=True,
        )
    except OSError as e:
        mngr.wait_until_finished()  # the checkpoint before it, if still being written, is whole when we stop
        run = Path(mngr.directory).parent
        raise OSError(
            e.errno,
            f"saving checkpoint step {step} of run {run} failed ({e.strerror or e}); free space and continue "
            f"with `saelab train --resume {run}` (the checkpoint of step {mngr.latest_step()} is kept)",
        ) from e


def restore(mngr: ocp.CheckpointManager, like: TrainState, step: int | None = None) -> Restored | None:
    """The state, loader state and step of checkpoint `step` (default the latest), laid out like `like`; None if
    there is none."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    out = mngr.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), loader=ocp.args.JsonRestore())
    )
    return Restored(TrainState(*out["state"]), out["loader"], step)


def restore_loader(mngr: ocp.CheckpointManager) -> dict[str, Any] | None:
    """The loader's JSON state of the latest checkpoint alone (what a source needs before the train state
    exists, e.g. the on-the-fly input-scaling statistic); None if there is no checkpoint."""
    step = mngr.latest_step()
    if step is None:
        return None
    return mngr.restore(step, args=ocp.args.Composite(loader=ocp.args.JsonRestore()))["loader"]
