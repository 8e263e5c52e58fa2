"""SelectConfig: one selection (pool, target, method, ratio, output); its fields are the CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["jaccard", "cosine", "euclidean", "bm25", "embed", "hidden", "neurons", "dsir", "random"]
SAE_METHODS = ("jaccard", "cosine", "euclidean")
MODEL_METHODS = (*SAE_METHODS, "hidden", "neurons")
DEFAULT_CACHE = Path.home() / ".cache" / "saelab" / "select"


class SelectConfig(BaseModel):
    """Validated settings of one selection; the same fields as `saelab select --help`."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    pool: Path
    """JSONL file of candidate records (one JSON object per line)."""
    target: Path
    """JSONL file of a few examples of the target task (tens to hundreds)."""
    text_field: str = "text"
    """Field holding the text of a pool record."""
    target_field: str | None = None
    """Field holding the text of a target record; None means the same as text_field."""
    method: Method = "jaccard"
    """Scoring: jaccard / cosine / euclidean over mean SAE codes (MoNA), or a baseline: bm25, embed (MiniLM),
    hidden (hidden-state mean), neurons (MLP-neuron mean), dsir (hashed n-gram importance), random."""
    ratio: float = Field(default=0.05, gt=0, le=1)
    """Fraction of the pool to select (the top of the ranking)."""
    model: str = "smollm2-135m"
    """Model alias, GGUF file, Hugging Face directory or hub id (methods that run the model)."""
    sae: Path | None = Path("checkpoints/demo")
    """SAE: a training run (checkpoints/NAME) or a SAELens-format directory (jaccard, cosine, euclidean)."""
    hook: str | None = None
    """Hook point; None means the SAE's own hook (its hook_name). hidden/neurons without an SAE need it."""
    batch_size: int = Field(default=32, ge=1)
    """Samples per model forward."""
    max_tokens: int = Field(default=256, ge=2)
    """Tokens per sample, BOS included (longer samples are truncated)."""
    chunk: int = Field(default=4096, ge=1)
    """Records per streamed chunk (memory is bounded by one chunk, not by the pool)."""
    center: bool = True
    """hidden/neurons: subtract the pool mean before the cosine (raw residual means share one direction)."""
    idf: bool = False
    """SAE methods: weight latent j by log((n+1)/(df_j+1)) over the pool before scoring (not in MoNA; an option
    that keeps latents firing on nearly every sample from dominating)."""
    seed: int = 0
    """Seed of the random baseline."""
    cache_dir: Path | None = DEFAULT_CACHE
    """Embedding cache (keyed by model, hook, SAE and data hash); None recomputes every time."""
    out: Path = Path("results/select")
    """Output directory: selected.jsonl, scores.tsv, summary.json."""
    overwrite: bool = False
    """Replace the files of an earlier selection in `out`."""
    progress: bool = True
    """Show a progress bar."""

    @model_validator(mode="after")
    def _check(self) -> SelectConfig:
        if self.method in SAE_METHODS and self.sae is None:
            raise ValueError(f"method {self.method!r} scores SAE codes: give --sae (a run dir or SAELens directory)")
        if self.method in ("hidden", "neurons") and self.sae is None and self.hook is None:
            raise ValueError(f"method {self.method!r} needs --hook (or an --sae whose hook it reads)")
        return self
