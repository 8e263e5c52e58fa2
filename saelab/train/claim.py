"""Claiming a run directory: a fresh run creates it with its resolved config, a resumed one must have the same
config, an existing one is only replaced when asked (--overwrite). Every process checks; process 0 writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from saelab.runtime.distributed import barrier, is_main
from saelab.runtime.rundir import RunDir
from saelab.train.config import TrainConfig


def prepare_run_dir(run_dir: RunDir, cfg: TrainConfig, resume: bool, overwrite: bool) -> None:
    """Check the run dir on every process (same errors everywhere), then process 0 alone (re)creates it."""
    claim_dir(run_dir.root, run_dir.config, cfg.model_dump(mode="json"), resume, overwrite, "run", "saelab-train")


def claim_dir(
    root: Path, f: Path, resolved: dict[str, Any], resume: bool, overwrite: bool, what: str, tag: str
) -> None:
    """The directory `root` of a run whose resolved config is the JSON file `f`: resuming needs the same config,
    an existing run needs --resume or --overwrite; process 0 alone (re)creates it, and the barriers (named
    `tag`) keep a process from seeing the config another one has just written."""
    fresh = True
    if f.exists():
        if resume:
            if json.loads(f.read_text()) != resolved:
                raise ValueError(
                    f"{what} {root} was started with another config; resume it with "
                    f"`saelab train --resume {root}` and no changes"
                )
            fresh = False
        elif not overwrite:
            raise ValueError(
                f"run {root} exists; continue it with `saelab train --resume {root}`, pick "
                "another train.name, or pass --overwrite to start it again"
            )
    barrier(f"{tag}-check")
    if fresh and is_main():
        if f.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(resolved, indent=2))
    barrier(f"{tag}-prepared")
