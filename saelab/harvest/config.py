"""Harvest configuration: what to run, where to hook, which text, how much, and where to write."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from saelab.runtime.config import Config


class HarvestConfig(Config):
    """Validated settings of one harvest; the same fields as `saelab harvest --help`."""

    model: str = "smollm2-135m"
    """Model alias, GGUF file, Hugging Face directory or hub id."""
    hooks: list[str] = Field(min_length=1)
    """Hook point names, all harvested from one forward pass, e.g. blocks.6.hook_resid_post."""
    corpus: str = "python-docs"
    """Corpus spec: python-docs, wikitext-2 (shipped), text:PATH, jsonl:PATH:FIELD or hf:NAME[:CONFIG]:SPLIT:FIELD."""
    split: Literal["all", "train", "heldout"] = "train"
    """Which documents: the held-out 5% is kept for evaluation."""
    tokens: int = Field(gt=0)
    """Number of tokens to harvest (rounded up to whole context windows)."""
    context: int = Field(default=128, ge=2)
    """Tokens per window, BOS included."""
    batch: int = Field(default=16, ge=1)
    """Windows per forward pass."""
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    """Storage dtype of the activations."""
    model_dtype: Literal["float32", "bfloat16"] = "float32"
    """Compute dtype of the model."""
    model_processing: Literal["none", "transformer_lens"] = "none"
    """Weight processing of the model: `transformer_lens` harvests GPT-2 as TransformerLens's from_pretrained
    processes it (folded LayerNorm, centred writing weights and unembedding, folded value biases)."""
    within_document: bool = False
    """Keep every window inside one document instead of packing across document boundaries."""
    shard_tokens: int = Field(default=65536, ge=1)
    """Tokens per shard (rounded down to whole windows)."""
    out: Path = Path("activations/demo")
    """Store directory."""
    overwrite: bool = False
    """Replace an existing store made with different settings (never done silently)."""
    on_nonfinite: Literal["error", "skip"] = "error"
    """A NaN or Inf activation (e.g. a bfloat16 overflow) stops the harvest naming hook, document and position
    (error), or leaves its window out of the store, counted in the manifest's skipped_windows (skip)."""

    @field_validator("hooks")
    @classmethod
    def _no_duplicates(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate hook names in {v}")
        return v

    @property
    def n_windows(self) -> int:
        return -(-self.tokens // self.context)

    @property
    def shard_tokens_aligned(self) -> int:
        """Shards hold whole windows, so a resumed harvest restarts exactly at a window boundary."""
        return max(self.context, self.shard_tokens // self.context * self.context)
