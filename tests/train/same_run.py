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


def assert_close_params(mine, alone, label: str = "", rtol: float = 1e-5) -> None:
    """Two train results' parameters agree, each field to `rtol` of its largest entry (runs of the same batches
    whose programs differ, e.g. one SAE trained with others and alone)."""
    for field, a, b in zip(mine.params._fields, mine.params, alone.params, strict=True):
        if b is not None:
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
            assert err <= rtol, f"{label}{field}: relative difference {err:.2e}"
