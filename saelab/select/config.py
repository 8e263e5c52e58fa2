"""The select stage's settings: `SelectConfig` (one selection: pool, target, method, ratio, output),
`BenchConfig` (the labelled-pool bench) and `DownstreamConfig` (select, fine-tune, compare); fields are flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, model_validator

from saelab.data.texts import CLINC150
from saelab.runtime.config import Config

Method = Literal[
    "jaccard",
    "cosine",
    "euclidean",
    "bm25",
    "embed",
    "hidden",
    "neurons",
    "dsir",
    "random",
    "jaccard+bm25",
    "cosine+bm25",
]
Aggregation = Literal["mean", "max", "topm"]
Weighting = Literal["none", "idf", "bm25"]
CodeNorm = Literal["none", "l1"]
Pooling = Literal["mean", "max", "mean-skip"]
Template = Literal["none", "chat"]
SAE_METHODS = ("jaccard", "cosine", "euclidean")
FUSED_METHODS = {"jaccard+bm25": "jaccard", "cosine+bm25": "cosine"}
"""Reciprocal rank fusion of an SAE method (the value) with BM25."""
MODEL_METHODS = (*SAE_METHODS, "hidden", "neurons")
DEFAULT_CACHE = Path.home() / ".cache" / "saelab" / "select"
ALL_METHODS: list[Method] = [m for m in get_args(Method) if m != "cosine+bm25"]  # the bench default


class SelectConfig(Config):
    """Validated settings of one selection; the same fields as `saelab select --help`."""

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
    hidden (hidden-state mean), neurons (MLP-neuron mean), dsir (hashed n-gram importance), random; or
    jaccard+bm25 / cosine+bm25: reciprocal rank fusion of that SAE method with BM25 (saelab.select.fusion)."""
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
    that keeps latents firing on nearly every sample from dominating); the same as weighting = "idf"."""
    weighting: Weighting = "none"
    """SAE methods: latent weighting, none, idf (as `idf`), or bm25 (BM25 saturation of code values in units of
    each latent's mean firing, times idf; saelab.select.weighting)."""
    bm25_k1: float = Field(default=1.2, gt=0)
    """weighting = bm25: saturation constant k1."""
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    """weighting = bm25: code-mass normalisation b."""
    prototype_latents: int | None = Field(default=None, ge=1)
    """SAE methods: keep only the prototype's N largest latents (each target's, for max / topm) and zero the
    rest. A mean over targets is denser than any one record (the union of their latents), and for weighted
    Jaccard its small tail inflates every record's sum of maxima; None keeps every latent (MoNA)."""
    code_norm: CodeNorm = "none"
    """SAE methods: l1 scales every code (pool records and target examples, after the weighting) to unit mass
    before the similarity, so jaccard compares how a record's code mass spreads over latents, not how large its
    codes are (for unit-mass codes weighted Jaccard is (1 - d/2) / (1 + d/2), d their L1 distance)."""
    pooling: Pooling = "mean"
    """Token pooling of model embeddings: mean over the record's tokens (MoNA), max, or mean-skip (the mean
    without the first `skip_tokens` content tokens; a record that short keeps all of them)."""
    skip_tokens: int = Field(default=1, ge=1)
    """pooling = mean-skip: content tokens left out at the start."""
    template: Template = "none"
    """Input format of a record for the model methods: none (BOS + text) or chat (the user turn of the model's
    ChatML template, `<|im_start|>user\\n{text}<|im_end|>\\n`); template tokens are never pooled."""
    aggregation: Aggregation = "mean"
    """How the target examples combine, alike for every method: mean (one prototype: the mean target
    embedding, MoNA's; for BM25 the mean of its per-target scores, i.e. one query of all targets' words; for
    DSIR the targets' pooled n-gram distribution), max (each record's best per-target similarity) or topm
    (the mean of its top_m per-target similarities)."""
    top_m: int = Field(default=2, ge=1)
    """topm: how many of the best per-target similarities are averaged."""
    rrf_k: int = Field(default=60, ge=1)
    """Fused methods: the k of reciprocal rank fusion, 1 / (k + rank) (60, as in Cormack et al. 2009)."""
    seed: int = 0
    """Seed of the tie-break among equal scores and of the random baseline (both a seeded hash per record)."""
    cache_dir: Path | None = DEFAULT_CACHE
    """Embedding cache (keyed by model, hook, SAE and data hash); None recomputes every time."""
    out: Path = Path("results/select")
    """Output directory: selected.jsonl, scores.tsv, summary.json."""
    overwrite: bool = False
    """Replace the files of an earlier selection in `out`."""
    progress: bool = True
    """Show a progress bar."""

    @property
    def latent_weighting(self) -> Weighting:
        """The weighting in effect (`idf = true` is weighting = "idf")."""
        return "idf" if self.idf else self.weighting

    @model_validator(mode="after")
    def _check(self) -> SelectConfig:
        if self.idf and self.weighting not in ("none", "idf"):
            raise ValueError(f"idf = true and weighting = {self.weighting!r} contradict; set one of them")
        if (self.method in SAE_METHODS or self.method in FUSED_METHODS) and self.sae is None:
            raise ValueError(f"method {self.method!r} scores SAE codes: give --sae (a run dir or SAELens directory)")
        if self.method in ("hidden", "neurons") and self.sae is None and self.hook is None:
            raise ValueError(f"method {self.method!r} needs --hook (or an --sae whose hook it reads)")
        return self


class BenchConfig(Config):
    """Settings of `saelab select bench`; the same fields as its flags."""

    data: Path = CLINC150
    """Folder with CLINC150-style {train,val,test}.jsonl records of text, intent and domain (default: the
    CLINC150 subset shipped with saelab)."""
    pool_split: str = "train"
    """Split used as the pool."""
    target_split: str = "val"
    """Split the target examples are drawn from (disjoint from the pool)."""
    methods: list[Method] = Field(default_factory=lambda: list(ALL_METHODS))
    """Methods to compare."""
    saes: list[Path] = Field(default_factory=lambda: [Path("checkpoints/demo")])
    """SAEs for jaccard/cosine/euclidean (each its own rows); hidden/neurons run at each SAE's hook."""
    model: str = "smollm2-135m"
    """Model the SAEs were trained on."""
    hooks: list[str] = Field(default_factory=list)
    """More hooks for hidden/neurons, without an SAE (a layer sweep of the cheap baselines)."""
    levels: list[Literal["intent", "domain"]] = Field(default_factory=lambda: ["intent", "domain"])
    """Label levels to bench."""
    n_intent: int = Field(default=5, ge=1)
    """Target examples per intent (intent level)."""
    n_domain: int = Field(default=20, ge=1)
    """Target examples per domain (domain level)."""
    ratios: list[float] = Field(default_factory=lambda: [0.01, 0.05, 0.10])
    """Selection fractions to report precision and recall at."""
    max_labels: int | None = None
    """Bench only the first N intents / domains (quick runs); None means all."""
    pool_limit: int | None = None
    """Use only the first N pool records (quick runs); None means all."""
    idf: bool = False
    """SAE methods: IDF-weight the latents (SelectConfig.idf); rows are labelled jaccard+idf etc."""
    weighting: Weighting = "none"
    """SAE methods: latent weighting (SelectConfig.weighting)."""
    bm25_k1: float = Field(default=1.2, gt=0)
    """weighting = bm25: saturation constant k1."""
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    """weighting = bm25: code-mass normalisation b."""
    code_norm: CodeNorm = "none"
    """SAE methods: code normalisation before the similarity (SelectConfig.code_norm)."""
    prototype_latents: int | None = Field(default=None, ge=1)
    """SAE methods: the prototype's largest latents kept (SelectConfig.prototype_latents)."""
    pooling: Pooling = "mean"
    """Model methods: token pooling (SelectConfig.pooling)."""
    skip_tokens: int = Field(default=1, ge=1)
    """pooling = mean-skip: content tokens left out at the start."""
    template: Template = "none"
    """Model methods: input format (SelectConfig.template)."""
    max_tokens: int = Field(default=256, ge=2)
    """Tokens per sample, template included (SelectConfig.max_tokens)."""
    prefill: bool = True
    """Embed the pool for all model methods in one forward per input format before scoring (saelab.select.
    prefill); off embeds each method's pool on its own, as `saelab select` does."""
    aggregations: list[Aggregation] = Field(default_factory=lambda: ["mean"], min_length=1)
    """Target aggregations to bench (SelectConfig.aggregation), each its own rows for every method alike."""
    top_m: int = Field(default=2, ge=1)
    """topm: how many of the best per-target similarities are averaged."""
    cache_dir: Path | None = DEFAULT_CACHE
    """Pool embedding cache; a cached entry reports the embedding time measured when it was computed."""
    seed: int = 0
    """Seed of the target draws, of the tie-break among equal scores and of the random baseline."""
    batch_size: int = Field(default=64, ge=1)
    """Samples per model forward."""
    out: Path = Path("results/select-bench")
    """Output directory: bench.json and bench.md."""
    progress: bool = True
    """Show progress bars."""


class DownstreamConfig(Config):
    """Settings of `saelab select downstream`; the same fields as its flags."""

    data: Path = CLINC150
    """Folder with CLINC150-style {train,val,test}.jsonl: pool = train, targets from val, held-out = test
    (default: the CLINC150 subset shipped with saelab)."""
    level: Literal["domain", "intent"] = "domain"
    """Label level of the target task."""
    label: str = "credit_cards"
    """The target domain or intent."""
    n_target: int = Field(default=20, ge=1)
    """Target examples drawn from val."""
    methods: list[Method] = Field(default_factory=lambda: ["jaccard", "bm25", "random"])
    """Selections to compare."""
    ratio: float = Field(default=0.05, gt=0, le=1)
    """Fraction of the pool selected and fine-tuned on."""
    sae: Path = Path("checkpoints/demo")
    """SAE for the SAE-code methods."""
    idf: bool = False
    """SAE-code methods: IDF-weight the latents (SelectConfig.idf)."""
    weighting: Weighting = "none"
    """SAE-code methods: latent weighting (SelectConfig.weighting)."""
    code_norm: CodeNorm = "none"
    """SAE-code methods: code normalisation (SelectConfig.code_norm)."""
    prototype_latents: int | None = Field(default=None, ge=1)
    """SAE-code methods: the prototype's largest latents kept (SelectConfig.prototype_latents)."""
    pooling: Pooling = "mean"
    """Model methods: token pooling (SelectConfig.pooling)."""
    skip_tokens: int = Field(default=1, ge=1)
    """pooling = mean-skip: content tokens left out at the start."""
    template: Template = "none"
    """Model methods: input format of the selection (SelectConfig.template); fine-tuning reads BOS + text."""
    aggregation: Aggregation = "mean"
    """Target aggregation, alike for every method (SelectConfig.aggregation)."""
    top_m: int = Field(default=2, ge=1)
    """topm: how many of the best per-target similarities are averaged."""
    model: str = "smollm2-135m"
    """Model to select with and to fine-tune."""
    train_layers: int = Field(default=4, ge=1)
    """Fine-tune the top N blocks and the final norm; everything below (and the tied embeddings) is frozen."""
    steps: int = Field(default=48, ge=1)
    """Optimiser steps per selection (the same budget for every method)."""
    batch: int = Field(default=8, ge=1)
    """Texts per step."""
    lr: float = Field(default=2e-4, gt=0)
    """Adam learning rate."""
    seq: int = Field(default=24, ge=4)
    """Tokens per text, BOS included (CLINC utterances are shorter)."""
    seed: int = 0
    """Seed of the target draw, the random baseline and the batch order (when `seeds` is empty)."""
    seeds: list[int] = Field(default_factory=list)
    """Repeat the whole comparison for each of these seeds (target draw, random baseline, batch order) and
    report mean and standard deviation over them; empty means just `seed`."""
    out: Path = Path("results/select-downstream")
    """Output directory: one selection folder per method and downstream.json."""
    progress: bool = True
    """Show progress bars."""


class ChatCorpusConfig(Config):
    """Settings of the `select-corpus` stage: texts written as chat-format documents for harvesting the
    activations of a selection SAE (saelab.select.template.chat_document)."""

    sources: list[str] = Field(min_length=1)
    """Corpus specs (saelab.data.open_corpus), e.g. jsonl:{data}/clinc150/train.jsonl:text."""
    limit: int | None = Field(default=None, ge=1)
    """Documents per source at most (the first ones); None means all."""
    out: Path = Path("results/select-corpus/chat.jsonl")
    """JSONL file written, one {"text", "source"} per document."""
    overwrite: bool = False
    """Replace an existing file."""
