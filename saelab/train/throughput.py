"""Training throughput of one invocation, in tokens per second."""

from __future__ import annotations

import time


class Throughput:
    """Tokens per second, excluding the first (compiling) step."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.tokens = 0

    def tick(self, first: bool, batch: int) -> None:
        """Count one step of `batch` tokens; the clock starts after the first step of the invocation."""
        if first:
            return
        if self.t0 is None:
            self.t0 = time.perf_counter()
            return
        self.tokens += batch

    def rate(self) -> float:
        """Tokens per second since the clock started (0 before any timed step)."""
        return self.tokens / (time.perf_counter() - self.t0) if self.t0 and self.tokens else 0.0
