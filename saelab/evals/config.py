"""Evaluation configuration: which SAE, on which held-out text, how many tokens, where the results go."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    sae: Path
    """A training run (checkpoints/NAME) or a SAELens-format SAE directory."""
    corpus: str = "python-docs"
    """Corpus spec (see `saelab harvest --help`); evaluated on its held-out split unless `split` says otherwise."""
    split: Literal["all", "train", "heldout"] = "heldout"
    """Part of the corpus: `heldout` is the hashed split the harvester never stores for training."""
    heldout_fraction: float = Field(default=0.05, gt=0, lt=1)
    """Fraction of documents in the held-out split (must match the harvest's to mean 'unseen')."""
    tokens: int = Field(default=50_000, gt=0)
    """Tokens to evaluate (BOS included in the count, excluded from the metrics)."""
    context: int = Field(default=128, ge=2)
    batch: int = Field(default=16, ge=1)
    model: str | None = None
    """Model to splice into; default: the SAE's `model_name` (the alias it was trained on)."""
    hook: str | None = None
    """Hook to splice at; default: the SAE's own `hook_name`."""
    dense_threshold: float = Field(default=0.1, gt=0, le=1)
    """A latent is dense when it fires on more than this fraction of the eval tokens."""
    out: Path | None = None
    """Eval JSON path; the markdown report and PNG plots go beside it. Default: SAE/eval-<corpus>.json."""
    skip_missing: bool = False
    """Skip (with a message) instead of failing when a `text:` or `jsonl:` corpus file is absent."""
    progress: bool = True
