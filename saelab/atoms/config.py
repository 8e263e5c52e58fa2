"""The atoms stage's settings: `AnalysisOptions` (how each dictionary is measured) and `AtomsConfig` (which
dictionaries, on which store, written where), the fields of `saelab atoms` and of the `atoms` experiment stage."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from saelab.runtime.config import Config

AtomDefinition = Literal["all_samples", "median_k"]


class AnalysisOptions(Config):
    """How each dictionary is measured (the analysis half of AtomsConfig)."""

    centred: bool = False
    """AIP metric from the centred covariance instead of the raw second moment E[h h^T] (the default)."""
    max_cond: float = Field(default=1e6, gt=1)
    """Condition number above which the moment matrix gets a ridge (with a warning) before inversion."""
    atom_definition: AtomDefinition = "all_samples"
    """Per-atom uniqueness: every firing sample meets the bound (all_samples) or the median-L0 one does."""
    block: int = Field(default=2048, ge=1)
    """Samples encoded at a time."""
    rip_subsets: int = Field(default=256, ge=0)
    """Random K-subsets for the RIP estimate (0 skips it)."""
    rip_max_k: int = Field(default=64, ge=2)
    """Largest RIP order K; K is the median L0, at least 2."""
    recovery_samples: int = Field(default=256, ge=0)
    """Samples recovered by FISTA LASSO and compared with the dictionary's codes (0 skips it)."""
    recovery_lam: float = Field(default=0.05, gt=0, lt=1)
    """LASSO weight relative to ||x D^T||_inf of each sample."""
    recovery_iters: int = Field(default=200, ge=1)
    """FISTA iterations."""
    support_coherence: bool = True
    """Also compute uniqueness and q* under the alternative reading: per-sample coherence among the active atoms
    only (max_{i != j in supp z}), instead of each active atom against all atoms (the default)."""
    support_max_k: int = Field(default=64, ge=2)
    """Largest support for the alternative reading; samples with more active atoms keep the default."""
    angle_pairs: int = Field(default=20_000, ge=1)
    """Random atom pairs for the angle histograms."""
    seed: int = 0
    """Seed of every random sample (tokens, RIP subsets, angle pairs)."""


class AtomsConfig(AnalysisOptions):
    """Settings of `saelab atoms` and of the `atoms` experiment stage."""

    sae: list[Path] = Field(min_length=1)
    """SAEs to analyse: training runs (checkpoints/NAME) or SAELens-format directories; JumpReLU SAEs are
    atoms, every other architecture features."""
    store: Path
    """Activation store holding the SAEs' hook points (ideally not the one they were trained on)."""
    baselines: list[str] = ["neurons"]
    """Extra dictionaries: `neurons` (the standard basis of each hook) and more SAEs as PATH or LABEL=PATH."""
    hook: str | None = None
    """Hook point for SAEs whose metadata names none; default: the store's only hook."""
    tokens: int = Field(default=100_000, ge=2)
    """Tokens sampled from the store (without replacement, positions below min_position excluded)."""
    min_position: int = Field(default=1, ge=0)
    """Analyse tokens at window positions >= this: 1 drops the BOS (position 0), 2 also the first token after
    it, whose residual stream in SmolLM2's middle and late layers has up to ~100x the median norm (a handful
    of such tokens then carry most of the variance, and of SST in R^2); 0 keeps everything."""
    out: Path = Path("results/atoms")
    """Output directory: atoms.json, atoms.md and plots/."""
    plots: bool = True
    """Write the PNG plots."""
    progress: bool = True
    """Show a progress bar."""

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, v: list[str]) -> list[str]:
        for b in v:
            if b != "neurons" and not Path(b.split("=", 1)[-1]).exists():
                raise ValueError(f"baseline {b!r} is neither 'neurons' nor an existing SAE path (PATH or LABEL=PATH)")
        return v
