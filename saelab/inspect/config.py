"""InspectConfig: which SAE over which store, how many tokens, and how much of each dashboard to keep."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from saelab.runtime.config import Config


class InspectConfig(Config):
    """Validated settings of one dashboard build; the same fields as `saelab inspect --help`."""

    sae: Path
    """Training run (checkpoints/NAME) or SAELens-format SAE directory."""
    store: Path
    """Activation store harvested from the SAE's model at the SAE's hook point."""
    out: Path = Path("report")
    """Output directory of the static site (index.html inside)."""
    hook: str | None = None
    """Hook point to read from the store; default: the SAE's hook_name, or the store's only hook."""
    model: str | None = None
    """Model for decoding tokens and the logit lens; default: the store's model."""
    tokens: int = Field(default=200_000, ge=1)
    """Tokens of the store to scan (from its start, whole windows; capped at the store's size)."""
    batch_windows: int = Field(default=32, ge=1)
    """Context windows per jitted step (a step never splits a window, so every context is whole)."""
    top_k: int = Field(default=20, ge=1)
    """Top-activating contexts kept per latent."""
    quantiles: int = Field(default=5, ge=1)
    """Equal-width activation intervals over (0, max] that examples are sampled from."""
    per_quantile: int = Field(default=3, ge=1)
    """Random examples kept per interval."""
    bins: int = Field(default=32, ge=2)
    """Histogram bins over (0, max] of each latent's non-zero activations."""
    left: int = Field(default=12, ge=0)
    """Tokens of context shown before the activating token."""
    right: int = Field(default=4, ge=0)
    """Tokens of context shown after it."""
    max_active: int = Field(default=256, ge=1)
    """Non-TopK SAEs: latents kept per token (its largest); tokens with more are counted and reported.
    TopK SAEs keep exactly their k."""
    n_logits: int = Field(default=10, ge=1)
    """Top positive and negative logits listed per latent."""
    n_neighbours: int = Field(default=8, ge=1)
    """Nearest latents listed per latent (decoder cosine, and AIP)."""
    aip: bool = True
    """Also list neighbours by the atomic inner product, its metric estimated from the scanned activations."""
    include_bos: bool = False
    """Count BOS positions (position 0 of each window) too; they are usually excluded from SAE training."""
    shard_latents: int = Field(default=64, ge=1)
    """Latents per JSON data shard of the site (a latent page loads one shard: ~0.4 MB at 64)."""
    seed: int = 0
    """Seed of the random choice of interval examples."""
    overwrite: bool = False
    """Replace an existing report directory."""

    @model_validator(mode="after")
    def _check(self) -> InspectConfig:
        if self.left + self.right + 1 > 4096:
            raise ValueError(f"left + right + 1 = {self.left + self.right + 1} tokens of context is too wide")
        return self

    @property
    def width(self) -> int:
        """Tokens in one shown context."""
        return self.left + self.right + 1
