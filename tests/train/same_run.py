"""The check every resume test makes: a resumed run ends with the uninterrupted run's parameters and metrics."""

from __future__ import annotations

import numpy as np

from saelab.runtime.rundir import RunDir


def without_speed(rows: list[dict]) -> list[dict]:
    """Metric rows without their wall-clock throughput, the one field a resume may change."""
    return [{k: v for k, v in m.items() if k != "tokens_per_s"} for m in rows]


def assert_same_run(full, resumed, label: str = "") -> None:
    """`resumed` (a train result) has `full`'s parameters bit for bit and its metrics rows."""
    for field, a, b in zip(full.params._fields, full.params, resumed.params, strict=True):
        if a is not None:
            assert np.array_equal(np.asarray(a), np.asarray(b)), f"{label}{field} differs after resume"
    assert without_speed(RunDir(full.run_dir).read_metrics()) == without_speed(RunDir(resumed.run_dir).read_metrics())
