"""The atoms stages' settings: `AnalysisOptions` (how each dictionary is measured), `AtomsConfig` (which
dictionaries, on which store, written where: `saelab atoms` and the `atoms` experiment stage) and
`AtomsPaperConfig` (the `atoms-paper` stage: the paper's regime, issue 15, docs/methods.md "Atoms": bounded
activation sets M of several sizes, dictionaries of several widths trained on each M by saelab/atoms/fit.py,
the AIP metric from a separate store, neurons of the residual and MLP spaces)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

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


class AtomsPaperConfig(AnalysisOptions):
    """Settings of the `atoms-paper` experiment stage (`saelab.atoms.paper.run`)."""

    store: Path
    """Store the bounded sets M are drawn from (one hook, e.g. blocks.3.hook_resid_post)."""
    heldout_store: Path
    """Store of held-out documents at the same hook: the held-out rows."""
    metric: Literal["separate", "in_sample"] = "separate"
    """AIP metric S = (E[h h^T])^-1 from `metric_store` (the paper's separate Wikipedia sample) or from the
    analysed activations themselves (each M, and the held-out set, its own)."""
    metric_store: Path | None = None
    """Store of a separate corpus at the same hook (WikiText-2): the separate metric."""
    metric_tokens: int = Field(default=100_000, ge=2)
    """Tokens of `metric_store` the separate metric uses (positions >= min_position)."""
    mlp_store: Path | None = None
    """Store at the block's mlp.hook_post, harvested with the same corpus settings as `store` (token for token):
    the MLP-neuron rows; None leaves them out."""
    mlp_heldout_store: Path | None = None
    """mlp.hook_post store matching `heldout_store`."""
    mlp_metric_store: Path | None = None
    """mlp.hook_post store matching `metric_store`."""
    neuron_threshold: float = Field(default=0.1, gt=0, lt=1)
    """MLP neuron i is active on a token when |a_i| > neuron_threshold * max_j |a_j| (its K counts those)."""
    sizes: list[int] = Field(default=[256, 512, 1024, 2048], min_length=1)
    """|M|: nested set sizes (each set holds the smaller ones)."""
    dedupe: Literal["token", "none"] = "token"
    """M and the held-out set keep one token per distinct token id (a random occurrence), or every token."""
    min_position: int = Field(default=2, ge=0)
    """Tokens at window positions >= this only (2 drops the BOS and the outlier-norm token after it)."""
    heldout_tokens: int = Field(default=2048, ge=1)
    """Size of the held-out set."""
    multipliers: list[int] = Field(default=[1, 2, 4], min_length=1)
    """Atoms (JumpReLU) at |D| = multiplier x d_model."""
    feature_multiplier: int = Field(default=4, ge=1)
    """Features (ReLU, TopK) at |D| = feature_multiplier x d_model."""
    features: list[Literal["relu", "topk"]] = ["relu", "topk"]
    """Feature architectures trained on the same sets."""
    target_l0: float = Field(default=2.0, gt=0)
    """Atoms: the controller's target L0 (the paper's regime: one or two atoms per activation)."""
    matched_features: list[Literal["relu", "topk"]] = []
    """The same feature architectures again at the atoms' sparsity (ReLU: the controller at `target_l0`; TopK:
    k = round(target_l0)): a control the paper lacks, separating the threshold activation from the L0."""
    relu_target_l0: float = Field(default=32.0, gt=0)
    """ReLU features: the controller's target L0 (ordinary SAE sparsity)."""
    topk_k: int = Field(default=32, ge=1)
    """TopK features: k."""
    steps: int = Field(default=300, ge=1)
    """Optimiser steps of the atoms."""
    feature_steps: int | None = Field(default=None, ge=1)
    """Optimiser steps of the features, usual and matched (default: `steps`)."""
    controller_rate: float = Field(default=0.02, gt=0)
    """Gain of the target-L0 controller on log(L0 / target) per step (saelab/atoms/fit.py)."""
    batch: int = Field(default=128, ge=1)
    """Rows per step, drawn with replacement from M."""
    lr: float = Field(default=3e-3, gt=0)
    """Adam learning rate."""
    init: Literal["data", "registry"] = "data"
    """Decoder init: rows of M (data) or random directions (registry); see saelab/atoms/fit.py."""
    jumprelu_init_threshold: float = Field(default=0.1, ge=0)
    """Atoms: initial threshold (unit-scaled inputs)."""
    bandwidth: float = Field(default=0.02, gt=0)
    """Atoms: bandwidth of the straight-through threshold gradient (unit-scaled inputs)."""
    out: Path = Path("results/atoms-paper")
    """Output directory: atoms-paper.json, atoms-paper.md and plots/."""
    plots: bool = True
    """Write the phase-transition plot."""
    progress: bool = True
    """Show a progress bar."""

    @model_validator(mode="after")
    def _consistent(self) -> AtomsPaperConfig:
        if self.metric == "separate" and self.metric_store is None:
            raise ValueError("metric = 'separate' needs metric_store (e.g. a WikiText-2 store at the same hook)")
        if self.mlp_store is not None and (self.mlp_heldout_store is None or self.mlp_metric_store is None):
            if self.metric == "separate" or self.mlp_heldout_store is None:
                raise ValueError("mlp_store needs mlp_heldout_store (and mlp_metric_store for metric='separate')")
        if sorted(set(self.sizes)) != self.sizes:
            raise ValueError(f"sizes must be strictly increasing, got {self.sizes}")
        return self
