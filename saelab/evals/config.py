"""The evals stage's settings: `EvalConfig` (which SAE, on which held-out text, how many tokens, where the results
go) and `PlotConfig` (comparison plots across eval JSONs)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from saelab.runtime.config import Config


class EvalConfig(Config):
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
    hook_head_index: int | None = Field(default=None, ge=0)
    """At attn.hook_z, the one head the SAE reads and the splice replaces; default: the SAE's own."""
    model_processing: Literal["none", "transformer_lens"] | None = None
    """Weight processing of the model (`transformer_lens`: folded LayerNorm, centred writing weights and
    unembedding, folded value biases, GPT-2 only); default: the SAE's `model_processing` metadata, else none."""
    dense_threshold: float = Field(default=0.1, gt=0, le=1)
    """A latent is dense when it fires on more than this fraction of the eval tokens."""
    out: Path | None = None
    """Eval JSON path; the markdown report and PNG plots go beside it. Default: SAE/eval-<corpus>.json."""
    skip_missing: bool = False
    """Skip (with a message) instead of failing when a `text:` or `jsonl:` corpus file is absent."""
    progress: bool = True
    suite: str | None = None
    """SAEBench evaluators to run instead of this eval, comma-separated: core, absorption, sparse-probing, mdl,
    meta-structure; `saebench` is every offline one (docs/evaluation.md, "SAEBench suite")."""
    suite_quick: bool = False
    """The suite's quick variant (`--quick`, the same as `suite_variant = "quick"`): one batch of tokens, 800
    sampled absorption words, three probing datasets, a shorter meta-SAE run; each result says so."""
    suite_variant: Literal["full", "medium", "quick"] | None = None
    """The suite's workload by name (saelab/evals/saebench/sizes.py): `full` is SAEBench's (hours here),
    `medium` compares SAEs on two cores, `quick` is a smoke test; default full (quick with `--quick`)."""
    absorption_words: int | None = Field(default=None, ge=50)
    """Absorption: words sampled from the alphabetic vocabulary, over the variant's (None: the variant's)."""
    probing_datasets: list[str] | None = None
    """Sparse probing: sae-probes datasets to score, over the variant's (None: the variant's)."""
    probing_test_rows: int | None = Field(default=None, ge=10)
    """Sparse probing: the first test rows of each dataset scored, over the variant's (None: the variant's)."""
    suite_store: Path | None = None
    """Read the suite's token activations (core reconstruction, MDL) from this activation store instead of the
    model; CE/KL and the prompt-based metrics still run the model."""
    suite_cache: Path = Path("activations/saebench-cache")
    """Folder keeping the model's activations on the suite's prompts and token batches (absorption, sparse
    probing, core and MDL), keyed by model, hook, head, position and the token ids: they do not depend on the
    SAE, so a second SAE at the same hook skips those model passes (docs/evaluation.md, "Activations shared
    between SAEs"). Safe to delete."""
    use_suite_cache: bool = True
    """Read and write `suite_cache`; off, every run computes its activations from the model."""
    probe_fit: Literal["saebench", "l2-c1"] = "saebench"
    """Sparse-probing fit: `saebench` (sae-probes' search over ten C by validation AUC, L1 saga), or the faster
    `l2-c1` (one L2 fit at C = 1, no search)."""

    @model_validator(mode="after")
    def _one_variant(self) -> EvalConfig:
        if self.suite_quick and self.suite_variant not in (None, "quick"):
            raise ValueError(f"--quick and suite_variant {self.suite_variant!r} disagree; give one of them")
        return self


class PlotConfig(Config):
    """Settings of the `plot` experiment stage: which eval JSONs, which keys against which, written where."""

    inputs: list[Path] = Field(min_length=1)
    """Eval JSON files (written by `saelab eval`)."""
    x: str = "meta.layer"
    """Dotted key of the x value in each eval JSON, e.g. `meta.layer` or `l0`."""
    y: list[str] = ["explained_variance", "l0", "ce_loss_recovered"]
    """Dotted keys plotted against x, one panel each."""
    series: str | None = None
    """Dotted key that groups points into lines (e.g. `meta.trainer`); None draws one line."""
    title: str = ""
    out: Path
    """PNG path; the table goes to the same path with `.md`."""
