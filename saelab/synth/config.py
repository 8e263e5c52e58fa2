"""WorldConfig: the parameters of a SynthSAEBench world (Chanin and Garriga-Alonso 2026, arXiv 2602.14687,
sec. 3; `sae_lens.synthetic.SyntheticModelConfig`), with SAELens's field meanings and two presets.

`SynthWorldConfig` and `SynthScoreConfig` are the `synth-world` and `synth-score` stages' configs.
`to_saelens()` / `from_saelens()` convert to and from the JSON dict `SyntheticModel.save` writes
(`synthetic_model_config.json`), so a world saved by either side names the same recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from saelab.atoms.config import AnalysisOptions
from saelab.runtime.config import Config

Preset = Literal["synth-sae-bench-16k", "small"]


class WorldConfig(Config):
    """One synthetic world: N true features in R^d, x = sum_i a_i f_i + b (docs/synth.md lists the recipe)."""

    num_features: int = Field(default=16_384, ge=1)
    """N, the number of true features."""
    hidden_dim: int = Field(default=768, ge=1)
    """d, the width of a sample."""
    zipf_exponent: float = Field(default=0.5, gt=0)
    """Firing probability p_i interpolates r_i = i^-exponent (i = 1..N) linearly onto [min_prob, max_prob]."""
    max_prob: float = Field(default=0.4, gt=0, le=1)
    min_prob: float = Field(default=5e-4, gt=0, le=1)
    hierarchy_roots: int = Field(default=128, ge=0)
    """Trees of the hierarchy forest (0: no hierarchy); features handed out breadth-first from index 0."""
    branching: int = Field(default=4, ge=2)
    """Children per parent."""
    depth: int = Field(default=3, ge=1)
    """Levels below the roots (SAELens's max_depth)."""
    exclusive_portion: float = Field(default=1.0, ge=0, le=1)
    """Fraction of parents whose children are mutually exclusive (SAELens's mutually_exclusive_portion)."""
    compensate_probabilities: bool = True
    """Divide a child's p by its parent's and multiply by 1 + (siblings' p) / p_parent, clamped at 1."""
    scale_children_by_parent: bool = True
    """A child's magnitude is multiplied by a_parent / mu_parent (SynthSAEBench v2) instead of a 0/1 gate."""
    correlation_rank: int | None = Field(default=25, ge=1)
    """Rank of the Gaussian-copula correlation factor; None fires features independently."""
    correlation_scale: float = Field(default=0.1, ge=0)
    """Standard deviation of the factor's entries."""
    mean_magnitude_start: float = Field(default=5.0, gt=0)
    """Mean firing magnitude mu_i, linear from this (i = 0) ..."""
    mean_magnitude_end: float = Field(default=4.0, gt=0)
    """... to this (i = N - 1)."""
    std_magnitude_mean: float = 0.5
    """Per-feature magnitude spread sigma_i ~ |N(std_magnitude_mean, std_magnitude_std^2)|, drawn once."""
    std_magnitude_std: float = Field(default=0.5, gt=0)
    bias_norm: float = Field(default=0.5, ge=0)
    """Norm of the random bias b added to every sample (0: none)."""
    orthogonalize_steps: int = Field(default=100, ge=0)
    """Adam steps on sum_{i!=j} (f_i.f_j)^2 + N sum_i (|f_i|^2 - 1)^2 (0: plain random unit vectors)."""
    orthogonalize_lr: float = Field(default=3e-4, gt=0)
    seed: int = 42

    @model_validator(mode="after")
    def _check(self) -> WorldConfig:
        if self.min_prob >= self.max_prob:
            raise ValueError(f"min_prob ({self.min_prob}) must be below max_prob ({self.max_prob})")
        return self

    @property
    def hierarchy_size(self) -> int:
        """Features inside the hierarchy forest (the rest fire freely)."""
        per_tree = sum(self.branching**level for level in range(self.depth + 1))
        return min(self.hierarchy_roots * per_tree, self.num_features)

    def to_saelens(self) -> dict[str, Any]:
        """The `synthetic_model_config.json` dict of `sae_lens.synthetic.SyntheticModelConfig` for this world."""
        return {
            "num_features": self.num_features,
            "hidden_dim": self.hidden_dim,
            "firing_probability": {
                "generator_name": "zipfian",
                "exponent": self.zipf_exponent,
                "max_prob": self.max_prob,
                "min_prob": self.min_prob,
            },
            "hierarchy": None
            if self.hierarchy_roots == 0
            else {
                "total_root_nodes": self.hierarchy_roots,
                "branching_factor": self.branching,
                "max_depth": self.depth,
                "mutually_exclusive_portion": self.exclusive_portion,
                "mutually_exclusive_min_depth": 0,
                "mutually_exclusive_max_depth": None,
                "compensate_probabilities": self.compensate_probabilities,
                "scale_children_by_parent": self.scale_children_by_parent,
            },
            "orthogonalization": None
            if self.orthogonalize_steps == 0
            else {"num_steps": self.orthogonalize_steps, "lr": self.orthogonalize_lr, "chunk_size": 1024},
            "correlation": None
            if self.correlation_rank is None
            else {"rank": self.correlation_rank, "correlation_scale": self.correlation_scale, "seed": None},
            "std_firing_magnitudes": {
                "generator_name": "folded_normal",
                "mean": self.std_magnitude_mean,
                "std": self.std_magnitude_std,
                "min_value": None,
                "max_value": None,
            },
            "mean_firing_magnitudes": {
                "generator_name": "linear",
                "start": self.mean_magnitude_start,
                "end": self.mean_magnitude_end,
            },
            "bias": self.bias_norm if self.bias_norm > 0 else False,
            "dtype": "float32",
            "seed": self.seed,
        }

    @classmethod
    def from_saelens(cls, d: dict[str, Any]) -> WorldConfig:
        """The WorldConfig of a SAELens `synthetic_model_config.json`; ValueError for a recipe saelab does not
        implement (another firing or magnitude generator, random branching, depth-limited exclusion)."""
        fp = d["firing_probability"]
        _require(fp.get("generator_name") == "zipfian", f"firing_probability {fp.get('generator_name')!r}")
        h = d.get("hierarchy")
        if h is not None:
            _require(isinstance(h["branching_factor"], int), "a random branching_factor")
            _require(h.get("mutually_exclusive_min_depth", 0) == 0, "mutually_exclusive_min_depth > 0")
            _require(h.get("mutually_exclusive_max_depth") is None, "mutually_exclusive_max_depth")
        std, mean = d.get("std_firing_magnitudes", 0.0), d.get("mean_firing_magnitudes", 1.0)
        _require(isinstance(std, dict) and std.get("generator_name") == "folded_normal", f"std magnitudes {std}")
        _require(isinstance(std, dict) and std.get("min_value") is None and std.get("max_value") is None, "clamps")
        _require(isinstance(mean, dict) and mean.get("generator_name") == "linear", f"mean magnitudes {mean}")
        o, c = d.get("orthogonalization"), d.get("correlation")
        bias = d.get("bias", 1.0)
        return cls(
            num_features=d["num_features"],
            hidden_dim=d["hidden_dim"],
            zipf_exponent=fp["exponent"],
            max_prob=fp["max_prob"],
            min_prob=fp["min_prob"],
            hierarchy_roots=0 if h is None else h["total_root_nodes"],
            branching=4 if h is None else h["branching_factor"],
            depth=3 if h is None else h["max_depth"],
            exclusive_portion=0.0 if h is None else h["mutually_exclusive_portion"],
            compensate_probabilities=False if h is None else h["compensate_probabilities"],
            scale_children_by_parent=False if h is None else h["scale_children_by_parent"],
            correlation_rank=None if c is None else c["rank"],
            correlation_scale=0.1 if c is None else c["correlation_scale"],
            mean_magnitude_start=mean["start"],
            mean_magnitude_end=mean["end"],
            std_magnitude_mean=std["mean"],
            std_magnitude_std=std["std"],
            bias_norm=(1.0 if bias is True else float(bias or 0.0)),
            orthogonalize_steps=0 if o is None else o["num_steps"],
            orthogonalize_lr=3e-4 if o is None else o["lr"],
            seed=d.get("seed") if d.get("seed") is not None else 0,
        )


class SynthWorldConfig(Config):
    world: WorldConfig | Preset = "small"
    """A preset ("small": 4,096 features in d = 192; "synth-sae-bench-16k": the paper's 16,384 in d = 768) or
    a full [world] table of WorldConfig fields."""
    source: Path | None = None
    """A world saved by SAELens's `SyntheticModel.save` (or by saelab) to load instead of generating one."""
    samples: int = Field(default=4_194_304, gt=0)
    """Samples written into the store (train on at most this many for a single pass)."""
    seed: int = 0
    """Seed of the store's sample stream (scoring draws fresh samples from another stream)."""
    batch: int = Field(default=4096, ge=1)
    """Samples drawn per jitted call."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Store dtype."""
    out: Path = Path("activations/synth")
    """Directory of `world/` and `store/`."""
    overwrite: bool = False
    """Replace a store made with other settings."""
    progress: bool = True


class ScoredSAE(Config):
    name: str
    """Row label."""
    path: Path
    """A training run (checkpoints/NAME) or a SAELens-format SAE directory."""
    group: str = ""
    """Line of the plot it belongs to (an architecture or a trainer); empty: its own name."""


class SynthScoreConfig(Config):
    world: Path
    """A saved world (`synth-world`'s out/world, or a SAELens `SyntheticModel.save` directory)."""
    saes: list[ScoredSAE] = Field(min_length=1)
    """The SAEs to score, in table order."""
    samples: int = Field(default=100_000, gt=0)
    """Fresh samples per SAE (SAELens's default)."""
    seed: int = 1
    """Seed of the scoring stream (the same samples for every SAE; not the store's stream)."""
    batch: int = Field(default=4096, ge=1)
    atoms_samples: int = Field(default=4096, ge=0)
    """Fresh samples for the atoms analysis of every dictionary and of the truth (0 skips it)."""
    atoms: AnalysisOptions = AnalysisOptions(rip_subsets=0, angle_pairs=1000, recovery_samples=256)
    """How the atoms analysis measures each dictionary (saelab.atoms's options)."""
    out: Path
    """Directory of scores.json, scores.md and f1_mcc_vs_l0.png."""


def preset(name: Preset, **changes: Any) -> WorldConfig:
    """SynthSAEBench-16k (the paper's fixed world: 16,384 features in d = 768, seed 42), or "small": the same
    recipe at 4,096 features in d = 192 with 32 trees (a quarter of the features and width; 2,720 in the
    forest, 66% of the features as in the 16k world), small enough to train on a CPU."""
    small = {"num_features": 4096, "hidden_dim": 192, "hierarchy_roots": 32}
    return WorldConfig(**({} if name == "synth-sae-bench-16k" else small), **changes)


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"this SAELens world uses {what}, which saelab.synth does not implement")
