"""A run's metrics: one JSON row per log step in `metrics.jsonl`, and the same row in wandb when tracking is on.

The wandb run id is made once per run directory (`wandb_run_id`), so a resumed run continues its wandb run.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import numpy as np

from saelab.runtime.distributed import is_main
from saelab.runtime.rundir import RunDir
from saelab.train.config import TrainConfig


class MetricsLog:
    """metrics.jsonl (truncated to the restored step on resume, so a resumed log equals an uninterrupted
    one) and wandb."""

    def __init__(self, run_dir: RunDir, start: int, cfg: TrainConfig) -> None:
        self.main = is_main()
        self.path = run_dir.metrics
        self.wandb = None
        if not self.main:
            return
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        self.path.write_text("".join(l + "\n" for l in lines if json.loads(l)["step"] <= start))
        if cfg.train.wandb != "disabled":
            import wandb

            self.wandb = wandb.init(
                project="saelab",
                name=cfg.train.name,
                id=wandb_run_id(run_dir, cfg.train.name),
                dir=str(run_dir.wandb.parent),
                mode=cfg.train.wandb,
                resume="allow",
                config=cfg.model_dump(mode="json"),
                settings=wandb.Settings(quiet=True),
            )

    def write(
        self,
        step: int,
        host: list[dict[str, Any]],
        counts: np.ndarray,
        cfg: TrainConfig,
        rate: float,
        evals: dict[str, float] | None = None,
    ) -> dict[str, float]:
        """Average the window's per-step metrics (fetched by the loop) over the steps applied, count the
        skipped ones, add the dense fraction from the window's firing `counts` (d_sae,) and the held-out
        `evals` of this step, and log the row."""
        applied = [m for m in host if not m["nonfinite"]] or host
        row = {k: float(np.mean([m[k] for m in applied])) for k in host[0] if k != "nonfinite"}
        row["skipped_batches"] = int(sum(m["nonfinite"] for m in host))
        window = float(len(host) * cfg.data.batch_size)
        row |= {
            "step": step,
            "tokens": step * cfg.data.batch_size,
            "tokens_per_s": rate,
            "dense_fraction": float(np.mean(counts / window > cfg.train.dense_threshold)),
        }
        row |= evals or {}
        if self.main:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
            if self.wandb is not None:
                self.wandb.log(row, step=step)
        return row

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def wandb_run_id(run_dir: RunDir, name: str) -> str:
    """The wandb run id of `run_dir`, made once per run: a resumed run continues its wandb run, while a run
    re-created with --overwrite (its directory, this file included, is removed) starts a new one instead of
    appending to the old run's history under the same id."""
    f = run_dir.wandb_id
    if f.exists():
        return f.read_text().strip()
    if run_dir.wandb.is_dir():  # a run started before ids were kept: its wandb id was the run name
        run_id = name.replace("/", "-")
    else:
        run_id = f"{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}-{secrets.token_hex(4)}"
    f.write_text(run_id + "\n")
    return run_id


def side_by_side() -> None:
    """Let each SAE's `wandb.init` open its own run: by default a second init in one process returns the
    run already open, and every SAE would log into the first one's."""
    import wandb

    wandb.setup(wandb.Settings(reinit="create_new"))
