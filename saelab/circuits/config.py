"""Circuits configuration: which task and model, which methods, how many prompts, the SAE's settings and the
ground-truth rule; the same fields as `saelab circuits --help`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from saelab.circuits.tasks import BUILTIN
from saelab.runtime.cliargs import build_config
from saelab.runtime.config import Config

PAPER_L1 = {"ioi": 0.02, "greater-than": 0.02, "docstring": 0.05}  # O'Neill & Bui, on raw inputs, their loss
CENTERED_L1 = 0.5  # measured on SmolLM2 (IOI, greater-than, docstring) with scaling="center"


class CircuitsConfig(Config):
    """Validated settings of one circuit-discovery run."""

    task: str
    """ioi, greater-than, docstring, or jsonl:PATH (records {"positive","negative","answer","wrong"})."""
    model: str = "smollm2-135m"
    """Model alias, GGUF file, Hugging Face directory or hub id."""
    recipe: Literal["saelab", "paper"] = "saelab"
    """How the SAE-code method runs. "paper": O'Neill & Bui's code exactly (saelab.circuits.paper): raw head
    outputs averaged over all positions (BOS included), `count_prompts` positives and as many negatives
    counted, an SAE of 200 ReLU latents trained on 10 of those prompts drawn at random from both kinds
    (element-mean MSE + lambda * mean L1, lambda 0.02 IOI and greater-than, 0.05 docstring; Adam 1e-3, 500
    full-batch epochs), IOI negatives with only the subject's first mention replaced; it ignores
    sae_prompts, latents, l1, epochs, lr, positions and scaling. "saelab": the settings below."""
    count_prompts: int = Field(default=250, ge=1)
    """Prompt pairs whose codes are counted: recipe="paper", the paper's 250 (the SAE's 10 prompts among them);
    positions="aligned", fresh pairs drawn apart from the SAE's and the ground truth's."""
    score: Literal["soft", "shift", "pair", "z"] = "soft"
    """positions="aligned": a head's score per role, its best role. "soft" (default): how much SAE latent mass
    the task moves, ||sum over pairs of f(positive) - f(negative)||_1, as a z-score against within-pair label
    swaps (about 0 for codes that ignore the task, however many). "shift": the same on the argmax codes (the
    total variation between the code histograms of positives and negatives). "z": |P_h \\ N_h| as that
    z-score. "pair": the fraction of pairs whose two prompts get different codes (uncalibrated: a swap null
    cannot move it). Chosen on seed 0 of SmolLM2 (AUC soft / shift / z / pair: IOI 0.913 / 0.832 / 0.574 /
    0.958, greater-than 0.852 / 0.903 / 0.870 / 0.889, docstring 0.873 / 0.799 / 0.751 / 0.905), the best
    worst task among the calibrated ones; circuits.json holds all four (sae-codes = this one)."""
    null_permutations: int = Field(default=100, ge=2)
    """positions="aligned": within-pair label swaps of the null each node score is calibrated against."""
    method: Literal["sae-codes", "patching", "attribution", "graph", "all"] = "all"
    """Which head rankings to compute. Exact patching also runs whenever the ground truth needs it; "graph"
    (and "all") needs `transcoders`."""
    transcoders: Path | None = None
    """A transcoder set or CLT as `saelab trace` reads it (e.g. checkpoints/transcoders-plt): with it the graph
    method ranks heads by the attribution-graph edges they carry (saelab.circuits.graph), on the same prompts as
    attribution patching (the held-out ones under `held_out`)."""
    graph_prompts: int = Field(default=8, ge=1)
    """Prompts the graph method traces (the first of attribution's)."""
    graph_max_features: int | None = Field(default=512, ge=1)
    """Feature nodes per graph, the most influential (circuit-tracer's `max_feature_nodes`); None: all."""
    graph_edges: int = Field(default=2048, ge=1)
    """The strongest kept cross-position edges per graph whose heads are counted."""
    prompts: int = Field(default=40, ge=1)
    """Prompt pairs for patching, attribution and the task baselines."""
    sae_prompts: int = Field(default=5, ge=1)
    """Prompt pairs the SAE is trained on (this many positives plus as many negatives; the paper used 5-10
    prompts), drawn independently of the patching prompts."""
    seed: int = 0
    """Seed of the prompt generators and the SAE initialisation."""
    l1: float | None = Field(default=None, ge=0)
    """SAE L1 coefficient (recipe="saelab"). Default: 0.5 with scaling="center"; otherwise the paper's per-task
    values (0.02 IOI, greater-than and user tasks; 0.05 docstring), which saelab's loss (squared error summed
    over d_model, inputs rescaled) makes a different sparsity from the paper's."""
    epochs: int = Field(default=100, ge=1)
    """Full-batch Adam steps of the SAE. The paper's 500 steps at lr 1e-3 scored the same AUC on SmolLM2 at
    five times the training time."""
    latents: int = Field(default=200, ge=2)
    """SAE width."""
    lr: float = Field(default=3e-3, gt=0)
    """SAE Adam learning rate."""
    positions: Literal["aligned", "all", "last"] = "aligned"
    """recipe="saelab". "aligned" (default, saelab.circuits.calibrated): the SAE trains on `sae_prompts` pairs
    at the token roles every pair shares (last token, last changed token, a later repeat of a changed token:
    IOI's END, S1/IO and S2), codes are counted on `count_prompts` fresh pairs, and a head scores its best
    z-score over roles against a label-swap null (about 0 for a head whose codes ignore the task, whatever
    its number of codes); `scaling` is then "center". "all" / "last": codes of the SAE's own prompts with
    head outputs averaged over all positions or taken at the last one, scored by the raw |P_h \\ N_h|. None
    is the paper's recipe: see `recipe`."""
    scaling: Literal["mean-norm", "unit", "center", "none"] = "center"
    """SAE input scaling: "center" (default) removes each head's mean over the SAE prompts, then scales to
    unit mean norm, so codes describe how a head varies rather than which head it is; "mean-norm" (the paper's
    setting) only scales to unit mean norm; "unit" normalises every vector; "none" leaves them raw.
    None of these with positions="all" is the paper's recipe (its loss, SAE and prompts differ too): use
    recipe="paper"."""
    ground_truth: Literal["patching", "mean-ablation", "published", "none"] = "patching"
    """Reference head set: from exact patching, from mean ablation, the published GPT-2 small circuit
    (Wang et al. IOI, Hanna et al. greater-than), or none (scores only, no AUC)."""
    threshold: float = Field(default=0.1, gt=0, le=1)
    """A head is in the ground-truth set when |effect| >= threshold * max |effect|."""
    top_n: int | None = Field(default=None, ge=1)
    """Instead of `threshold`: the top_n heads by |effect|."""
    ig_steps: int = Field(default=0, ge=0)
    """EAP-IG at head level (Hanna et al. 2024) next to attribution patching, with this many interpolation
    steps (5 in the paper; 0 skips it); runs when attribution does, on the same prompts."""
    held_out: bool = False
    """The honest protocol: attribution and EAP-IG run on `prompts` fresh pairs disjoint from the ground
    truth's (as the SAE-code prompts always are), and exact patching runs on them too, scored as
    "patching-held-out": the AUC of one ground truth against another, the ceiling any method can reach."""
    mean_ablation: bool = True
    """Also run mean ablation (as costly as exact patching) when patching runs."""
    effects_from: Path | None = None
    """circuits.json of an earlier run with the same task, model, prompts, seed and task options: its patching,
    mean-ablation and attribution effects (and their runtimes) are reused instead of measured again, so SAE-code
    settings can be re-scored in seconds against a ground truth that took minutes."""
    stability_seeds: int = Field(default=0, ge=0)
    """Rerun the SAE-code method on this many fresh draws of its training prompts and report AUC mean and
    spread (5 in the paper's robustness check; 0 skips)."""
    docstring_args: int = Field(default=5, ge=2)
    """Arguments of the docstring task's functions (3 is too easy for SmolLM2)."""
    eot_prefix: bool = True
    """Start every prompt with the tokenizer's end-of-text token (steadies weak templates)."""
    chunk_tokens: int = Field(default=8192, ge=1)
    """Bound on heads x prompts x seq per patching call (memory)."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Model compute dtype."""
    progress: bool = True
    """Show progress bars."""
    out: Path = Path("results/circuits")
    """Output directory for circuits.json and the plots (default: results/circuits/<task>)."""

    @model_validator(mode="before")
    @classmethod
    def _default_out(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("out") is None and isinstance(data.get("task"), str):
            data = data | {"out": Path("results/circuits") / Path(data["task"].removeprefix("jsonl:")).stem}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> CircuitsConfig:
        if self.ground_truth == "published" and self.task not in ("ioi", "greater-than"):
            raise ValueError("published head sets exist for ioi and greater-than (GPT-2 small) only")
        if self.method == "graph" and self.transcoders is None:
            raise ValueError("method='graph' ranks heads from attribution graphs: set transcoders (a trace folder)")
        if self.ground_truth == "mean-ablation" and not self.mean_ablation:
            raise ValueError("ground_truth='mean-ablation' needs mean_ablation=true")
        if self.task not in BUILTIN and not (self.task.startswith("jsonl:") or self.task.endswith(".jsonl")):
            raise ValueError(f"task must be one of {list(BUILTIN)} or jsonl:PATH, got {self.task!r}")
        return self

    @property
    def l1_value(self) -> float:
        if self.l1 is not None:
            return self.l1
        return CENTERED_L1 if self.scaling == "center" else PAPER_L1.get(self.task, 0.02)


def load_config(path: str | Path, **overrides: Any) -> CircuitsConfig:
    """A config from a TOML file (its [circuits] table, or its top level), command-line overrides on top; the
    reader `saelab circuits --config` uses."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return build_config(CircuitsConfig, file=path, given=given, command="circuits")
