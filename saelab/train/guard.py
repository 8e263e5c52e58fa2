"""The host side of the trainer's fault checks: non-finite steps and divergence, read from fetched metrics.

The jitted step never applies a non-finite update and flags it (`nonfinite` in its metrics, see
`saelab.train.step`); `Guard.check` reads those flags from metrics the loop fetches anyway (at each log
step, and before each checkpoint, so no checkpoint follows an unseen bad step). With on_nonfinite="error"
the first flagged step stops the run with a `NonFiniteError` naming the step, the batch's store rows and
the likely cause; with "skip" the steps are counted. A loss far above its running level is reported as a
warning naming the step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from saelab.runtime.finite import NonFiniteError

DIVERGENCE_FACTOR = 10.0  # a step's loss this many times the running level is reported
_WARMUP = 20  # steps before the running level is trusted (early losses fall fast)
_DECAY = 0.9  # running level: exponential moving average of the finite per-step losses


class Guard:
    """Checks each step's fetched metrics once, in step order.

    `rows(step)` gives the store rows of the batch that step `step` (0-based) trained on, `bad_rows(rows)`
    the subset of them holding NaN or Inf activations; `describe(step)` what the run keeps (checkpoints).
    """

    def __init__(
        self,
        mode: str,
        rows: Callable[[int], np.ndarray],
        bad_rows: Callable[[np.ndarray], np.ndarray],
        hint: Callable[[], str],
    ) -> None:
        self.mode = mode
        self.rows = rows
        self.bad_rows = bad_rows
        self.hint = hint
        self.level: float | None = None
        self.seen = 0

    def check(self, first: int, pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The metrics of steps first, first + 1, ... fetched to the host (one transfer, at a log or checkpoint
        step); raises on a non-finite step (mode "error"), warns on divergence."""
        host = jax.device_get(pending)
        for i, m in enumerate(host):
            step = first + i
            if m["nonfinite"]:
                if self.mode == "error":
                    raise NonFiniteError(self._describe(step, m))
                continue
            self._watch(step, float(m["loss"]))
        return host

    def _watch(self, step: int, loss: float) -> None:
        self.seen += 1
        if self.level is not None and self.seen > _WARMUP and loss > DIVERGENCE_FACTOR * self.level > 0:
            warnings.warn(
                f"train: loss {loss:.4g} at step {step + 1} is {loss / self.level:.0f}x its running level "
                f"{self.level:.4g}: the run may be diverging (lower optim.lr, keep optim.grad_clip on)",
                RuntimeWarning,
                stacklevel=3,
            )
        self.level = loss if self.level is None else _DECAY * self.level + (1 - _DECAY) * loss

    def _describe(self, step: int, m: dict[str, Any]) -> str:
        rows = self.rows(step)
        bad = self.bad_rows(rows)
        shown = lambda r: ", ".join(str(int(i)) for i in r[:8]) + (", ..." if len(r) > 8 else "")
        if len(bad):
            cause = (
                f"the batch holds NaN/Inf activations at store rows {shown(bad)}: the store is damaged "
                "(`saelab store verify --deep STORE` names every shard and row); re-harvest it"
            )
        else:
            cause = (
                "the batch's activations are finite, so the update overflowed: lower optim.lr, keep "
                "optim.grad_clip on, or warm the learning rate up (optim.warmup_steps)"
            )
        return (
            f"train: non-finite step {step + 1} (loss {float(m['loss']):.4g}, grad norm "
            f"{float(m['grad_norm']):.4g}) on the batch of store rows {shown(np.sort(rows))} ({len(rows)} rows); "
            f"{cause}. The update was not applied and the run stopped: {self.hint()}, nothing was exported. "
            "Or set train.on_nonfinite='skip' to skip such batches (counted as skipped_batches in the metrics)"
        )
