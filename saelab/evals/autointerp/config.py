"""AutointerpConfig: which SAE and store, which judge, which scorers, and how many examples of each kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from saelab.runtime.config import Config

ScorerName = Literal["detection", "fuzzing", "embedding"]
SCORERS: tuple[ScorerName, ...] = ("detection", "fuzzing", "embedding")
RESULT_FILE = "autointerp.json"  # written beside the run (or SAE directory) by default


class AutointerpConfig(Config):
    """Validated settings of one autointerp run; the same fields as `saelab autointerp --help`."""

    sae: Path
    """Training run (checkpoints/NAME) or SAELens-format SAE directory."""
    store: Path | None = None
    """Activation store of the SAE's model and hook; default: the store the run was trained on."""
    out: Path | None = None
    """Result JSON; default: SAE/autointerp.json (beside the run, where dashboards and `saelab explain` look)."""
    report: Path | None = None
    """Dashboard report to show the explanations on; default: the newest `saelab inspect` report of this SAE."""
    hook: str | None = None
    """Hook point to read from the store; default: the SAE's hook_name."""
    model: str | None = None
    """Model whose tokenizer turns store tokens into text; default: the store's model."""
    latents: list[int] | None = None
    """Latents to explain; default: `n_latents` drawn at random among those that fire often enough."""
    n_latents: int = Field(default=8, ge=2)
    """Latents drawn when `latents` is not given (the shuffled control needs at least 2)."""
    judge: Literal["local", "openai"] = "local"
    """`local`: saelab's generation with `judge_model`; `openai`: the OpenAI-compatible endpoint named by
    SAELAB_JUDGE_BASE_URL, SAELAB_JUDGE_MODEL and OPENAI_API_KEY."""
    judge_model: str | None = None
    """Judge model: a saelab model name for `local` (default smollm2-135m, SmolLM2-135M-Instruct); overrides
    SAELAB_JUDGE_MODEL for `openai`."""
    judge_batch: int = Field(default=8, ge=1)
    """Local judge: chats per jitted generation call."""
    scorers: list[ScorerName] = Field(default=list(SCORERS))
    """Scorers to run: detection, fuzzing (delphi's) and embedding (MiniLM cosine AUROC)."""
    tokens: int = Field(default=100_000, ge=1)
    """Tokens of the store scanned for examples (from its start, whole windows)."""
    n_explain: int = Field(default=10, ge=1)
    """Top-activating contexts shown to the explainer."""
    n_test: int = Field(default=10, ge=1)
    """Activating contexts scored per latent (as many non-activating ones beside them)."""
    n_shown: int = Field(default=5, ge=1)
    """Contexts per judge prompt (delphi's n_examples_shown)."""
    threshold: float = Field(default=0.3, gt=0, le=1)
    """Tokens at or above this fraction of a context's largest activation are highlighted (delphi's 0.3)."""
    left: int = Field(default=12, ge=0)
    """Context tokens before the example token."""
    right: int = Field(default=4, ge=0)
    """Context tokens after it."""
    seed: int = 0
    """Seed of the latent draw, example sampling and the shuffled control."""

    @model_validator(mode="after")
    def _check(self) -> AutointerpConfig:
        if self.latents is not None and len(set(self.latents)) < 2:
            raise ValueError(f"latents: give at least 2 distinct latents (the shuffled control), got {self.latents}")
        if not self.scorers:
            raise ValueError(f"scorers: name at least one of {list(SCORERS)}")
        return self

    def store_path(self) -> Path:
        """The store given, or the one the training run read (its config.json's data.store)."""
        if self.store is not None:
            return self.store
        run_cfg = Path(self.sae) / "config.json"
        try:
            store = json.loads(run_cfg.read_text())["data"]["store"]
        except (OSError, KeyError, TypeError, ValueError):
            store = None
        if not store:
            raise ValueError(f"{self.sae} names no activation store (no data.store in {run_cfg}); pass --store")
        return Path(store)

    def out_path(self) -> Path:
        return self.out if self.out is not None else Path(self.sae) / RESULT_FILE
