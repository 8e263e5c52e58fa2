"""The layout of a training run directory, `checkpoints/<name>/`, known here and nowhere else.

    config.json      the resolved TrainConfig (what `saelab train --resume` reads back)
    checkpoints/     orbax checkpoints (train state + loader state per step)
    metrics.jsonl    one JSON line per log step
    wandb/           offline wandb tracking
    wandb-id         the run's wandb id (kept across --resume; gone with --overwrite, so a new run starts)
    sae/             the export: a SAELens-format SAE (cfg.json + sae_weights.safetensors)
    eval-*.json      eval results written beside the run (and their .md reports)

A multi-SAE run (`saelab.train.multi`) is a parent directory holding `multi.json` (its resolved
MultiTrainConfig) and one sub-directory per SAE, each a run directory as above.

It lives under `runtime` rather than `train` because the stages below the trainer read it too:
`saelab.sae.load_sae` accepts a run directory and the analyses write their defaults into one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
MULTI_CONFIG_FILE = "multi.json"
EXPORT_DIR = "sae"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory; building one touches no file."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # accept a str too

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def multi_config(self) -> Path:
        """The resolved MultiTrainConfig of a multi-SAE run (its sub-runs are `member(name)`)."""
        return self.root / MULTI_CONFIG_FILE

    def member(self, name: str) -> RunDir:
        """The run directory of the SAE called `name` inside a multi-SAE run."""
        return RunDir(self.root / name)

    def is_multi(self) -> bool:
        """Whether `root` is a multi-SAE run (it has the resolved multi-SAE config)."""
        return self.multi_config.is_file()

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def wandb(self) -> Path:
        """Where wandb writes (it makes `wandb/` inside the `dir` it is given, the run root)."""
        return self.root / "wandb"

    @property
    def wandb_id(self) -> Path:
        """The file holding the run's wandb id."""
        return self.root / "wandb-id"

    @property
    def sae(self) -> Path:
        """The SAELens-format export."""
        return self.root / EXPORT_DIR

    def read_metrics(self) -> list[dict[str, Any]]:
        """The logged rows of `metrics.jsonl` in step order (empty before the first log step)."""
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines()]

    def eval_result(self, name: str) -> Path:
        """The JSON of the eval called `name` (its markdown report takes the same stem)."""
        return self.root / f"eval-{name}.json"

    def is_run(self) -> bool:
        """Whether `root` is a training run (it has the resolved config)."""
        return self.config.is_file()

    @classmethod
    def holding(cls, export: str | Path) -> RunDir | None:
        """The run whose export directory `export` is (RUN/sae), or None when it is not inside a run."""
        export = Path(export)
        run = cls(export.parent)
        return run if export.name == EXPORT_DIR and run.is_run() else None
