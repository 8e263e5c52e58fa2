"""Settings of the `atoms-paper` experiment stage: the atoms paper's regime (issue 15, docs/methods.md, "Atoms").

Bounded activation sets M of several sizes, dictionaries of several widths trained on each M
(saelab/atoms/fit.py), the AIP metric from a separate store, and neurons of the residual and MLP spaces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from saelab.atoms.config import AnalysisOptions


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
    relu_target_l0: float = Field(default=32.0, gt=0)
    """ReLU features: the controller's target L0 (ordinary SAE sparsity)."""
    topk_k: int = Field(default=32, ge=1)
    """TopK features: k."""
    steps: int = Field(default=300, ge=1)
    """Optimiser steps per dictionary."""
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
