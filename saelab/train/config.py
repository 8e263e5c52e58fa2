"""Training run configuration: TOML sections [data], [sae], [optim], [train], validated by pydantic.

The [data] section is one of two classes, by source (saelab.train.data_source).
`load_config(path, overrides)` reads a TOML file, applies `--set section.key=value` overrides, and rejects
unknown keys and impossible values before any compute. `resolve(cfg)` then opens the store's manifest (cheap)
to fill in d_in and check the hook, so a missing store is also an error before any compute.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import ConfigDict, Field, ValidationError, model_validator

from saelab.runtime.cliargs import parse_value
from saelab.runtime.config import Config, did_you_mean, explain_errors
from saelab.sae import SAEConfig, get_architecture
from saelab.sae.config import DEFAULT_ARCHITECTURE, check_fields
from saelab.sae.registry import ARCHITECTURES
from saelab.sae.scaling import InputScaling
from saelab.store import NotAStoreError, read_manifest
from saelab.train.data_source import DataConfig, DataSource, StoreData


class _Section(Config):
    pass


class SAESection(_Section):
    """The SAE, as its architecture's config class (saelab.sae) minus d_in (taken from the store), with d_sae or
    an expansion factor."""

    model_config = ConfigDict(extra="allow")
    expansion: int | None = Field(default=8, ge=1)
    """d_sae = expansion * d_in, unless d_sae is given."""
    d_sae: int | None = None
    """Number of latents; overrides expansion."""


class OptimConfig(_Section):
    lr: float = Field(default=3e-4, gt=0)
    """Peak Adam learning rate (SAELens default 3e-4)."""
    b1: float = Field(default=0.9, ge=0, lt=1)
    b2: float = Field(default=0.999, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    """Linear learning-rate warm-up from 0."""
    decay: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate schedule after warm-up, down to `final_lr_fraction` of the peak at the last step."""
    final_lr_fraction: float = Field(default=0.0, ge=0, le=1)
    grad_clip: float | None = Field(default=1.0, gt=0)
    """Global gradient-norm clip (SAELens default 1.0); None disables."""
    coefficient_warmup_steps: int = Field(default=0, ge=0)
    """Linear warm-up of the L1 / L0 coefficient (Gemma Scope warms the sparsity coefficient up); an error for
    architectures without one."""


class TrainSection(_Section):
    name: str = "sae"
    """Run name: outputs go to `out/name/`."""
    out: Path = Path("checkpoints")
    """Root directory of runs."""
    tokens: int = Field(default=2_000_000, gt=0)
    """Training tokens; steps = tokens // batch_size."""
    input_scaling: InputScaling = "sqrt_d"
    """Scale inputs by one scalar from the store's statistics so that the mean squared norm is d_in (sqrt_d,
    SAELens' convention) or 1 (unit, Gemma Scope's); folded back into the weights at export. Unset, it is the
    architecture's (unit for jumprelu, whose threshold and bandwidth defaults assume unit inputs)."""
    b_dec_init: Literal["geometric_median", "mean", "zeros"] = "geometric_median"
    """Initial decoder bias, from a sample of the store."""
    unit_norm_decoder: bool | None = None
    """Keep decoder rows at unit norm, removing the parallel gradient component (OpenAI); None means the
    architecture's registry default (on for the TopK family, off for relu and jumprelu)."""
    dead_tokens: int = Field(default=1_000_000, ge=1)
    """A latent is dead when it has not fired in this many training tokens (drives AuxK and the metric)."""
    dense_threshold: float = Field(default=0.1, gt=0, le=1)
    """A latent is dense when it fires on more than this fraction of a logging window's tokens."""
    log_every: int = Field(default=50, ge=1)
    checkpoint_every: int = Field(default=500, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    seed: int = 0
    """Seed of the parameter initialisation."""
    mesh_data: int = Field(default=-1)
    """Devices on the `data` (batch) axis; -1 means all devices not on the model axis."""
    mesh_model: int = Field(default=1, ge=1)
    """Devices on the `model` (latent) axis: W_enc, b_enc, threshold and W_dec are sharded on d_sae."""
    on_nonfinite: Literal["error", "skip"] = "error"
    """A step whose loss, gradients or updated parameters are NaN or Inf is never applied; "error" then stops
    the run naming the step and its store rows (last good checkpoint kept, nothing exported), "skip" goes on
    without it (counted as skipped_batches in the metrics)."""
    wandb: Literal["disabled", "offline", "online"] = "offline"
    """Weights & Biases tracking: offline by default (files under RUN/wandb; `wandb sync` uploads them later),
    `disabled` for none, online only when asked. A run re-created with --overwrite is a new wandb run."""
    progress: bool = True
    eval_every: int = Field(default=0, ge=0)
    """Held-out eval (explained variance, CE loss recovered, KL with the SAE spliced in) every this many steps,
    logged with that step's metrics as eval/*; 0 = off. A multiple of log_every."""
    eval_tokens: int = Field(default=4096, gt=0)
    """Tokens of the fixed held-out set of the in-training evals (the training corpus's held-out split)."""
    eval_batch: int = Field(default=8, ge=1)
    """Windows per in-training eval batch."""


class Paced:
    """The properties of a config whose [data] and [train] sections set the pace of a run."""

    data: DataConfig
    train: TrainSection

    @property
    def steps(self) -> int:
        return self.train.tokens // self.data.batch_size

    @property
    def run_dir(self) -> Path:
        return self.train.out / self.train.name


class TrainConfig(Paced, _Section):
    data: DataSource = StoreData()
    sae: SAESection = SAESection()
    optim: OptimConfig = OptimConfig()
    train: TrainSection = TrainSection()

    @model_validator(mode="before")
    @classmethod
    def _architecture_defaults(cls, data: Any) -> Any:
        """train.input_scaling follows the [sae] architecture's registry entry when it is not set."""
        if not isinstance(data, dict):
            return data
        name = _architecture_of(data.get("sae"))
        train = data.get("train", {})
        if not isinstance(name, str) or name not in ARCHITECTURES:
            return data  # the architecture check below names it
        if name == "clt":  # its hooks are every layer's MLP input and output (saelab.train.clt_config)
            from saelab.train.clt_config import clt_data_defaults

            data = {**data, "data": clt_data_defaults(data.get("data", {}))}
        default = get_architecture(name).input_scaling
        if isinstance(train, dict) and "input_scaling" not in train:
            return {**data, "train": {**train, "input_scaling": default}}
        if isinstance(train, TrainSection) and "input_scaling" not in train.model_fields_set:
            return {**data, "train": train.model_copy(update={"input_scaling": default})}
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.train.tokens < self.data.batch_size:
            raise ValueError(f"train.tokens={self.train.tokens} is less than one batch ({self.data.batch_size})")
        if self.train.eval_every % self.train.log_every:
            raise ValueError(
                f"train.eval_every={self.train.eval_every} is not a multiple of train.log_every="
                f"{self.train.log_every}; evals are logged with a metrics row"
            )
        extra = self.sae.model_extra or {}
        valid = [*SAESection.model_fields, *(f for f in _sae_fields() if f not in ("d_in", "d_sae"))]
        for key in sorted(set(extra) - set(valid)):  # before any store is opened, as every other section's
            hint = did_you_mean(key, valid)
            raise ValueError(f"sae.{key}: unknown key{hint} (valid: {', '.join(valid)}); remove or rename it")
        name = extra.get("architecture", DEFAULT_ARCHITECTURE)
        if isinstance(name, str):  # before any store is opened: a field the architecture ignores is an error
            fields = get_architecture(name).config.model_fields
            check_fields(get_architecture(name).config, extra)
            if self.optim.coefficient_warmup_steps and not fields.keys() & {"l1_coefficient", "l0_coefficient"}:
                raise ValueError(
                    f"optim.coefficient_warmup_steps warms up an L1 / L0 coefficient, which {name} SAEs do not "
                    "have; remove it"
                )
        return self


class Resolved(NamedTuple):
    cfg: TrainConfig
    sae: SAEConfig
    hook: str
    manifest: dict[str, Any]
    target_hook: str | None = None  # a transcoder's target hook


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """TOML file + `section.key=value` overrides (values parsed as TOML, bare words as strings)."""
    raw = read_toml(path, overrides)
    try:
        return TrainConfig(**raw)
    except ValidationError as e:
        why = explain_errors(e, TrainConfig)
        raise ValueError(f"invalid training config{f' {path}' if path else ''}:\n{why}") from None


def read_toml(path: str | Path | None, overrides: list[str] = ()) -> dict[str, Any]:
    """The tables of a TOML file (none without a path) with `section.key=value` overrides applied."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file {p} does not exist")
        raw = tomllib.loads(p.read_text())
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--set expects section.key=value, got {item!r}")
        section, field = key.split(".", 1)
        raw.setdefault(section, {})[field] = parse_value(value)
    return raw


def resolve(cfg: TrainConfig) -> Resolved:
    """Open the store manifest (or, on the fly, the model's config), pick the hook and build the SAEConfig
    (d_in from the store or the model); a CLT's by saelab.train.clt_config."""
    if _architecture_of(cfg.sae) == "clt":
        from saelab.train.clt_config import resolve_clt

        return resolve_clt(cfg)
    if cfg.data.source == "model":
        from saelab.train.stream import describe_source

        return _with_sae(cfg, cfg.data.hook, describe_source(cfg.data))
    try:
        manifest = read_manifest(cfg.data.store)
    except NotAStoreError as e:
        raise NotAStoreError(f"data.store: {e}, or point data.store at one") from None
    hooks = manifest["hooks"]
    hook = cfg.data.hook or (hooks[0] if len(hooks) == 1 else None)
    if hook is None:
        raise ValueError(f"store {cfg.data.store} holds hooks {hooks}; choose one with data.hook")
    if hook not in hooks:
        hint = did_you_mean(hook, hooks)
        raise ValueError(f"data.hook {hook!r} is not in store {cfg.data.store}; it holds {hooks}{hint}")
    return _with_sae(cfg, hook, manifest)


def _with_sae(cfg: TrainConfig, hook: str, manifest: dict[str, Any]) -> Resolved:
    d_in = int(manifest["d_model"])
    extra = dict(cfg.sae.model_extra or {})
    target = transcoder_target(cfg, hook, manifest["hooks"])
    if target is not None:
        extra["d_out"] = int(manifest.get("d_out", d_in))  # every hook of a store has its width
    d_sae = cfg.sae.d_sae or (cfg.sae.expansion or 8) * d_in
    cls = get_architecture(extra.get("architecture", DEFAULT_ARCHITECTURE)).config
    try:
        sae = cls(d_in=d_in, d_sae=d_sae, **extra)
    except ValidationError as e:
        why = explain_errors(e, cls, {name: f"sae.{name}" for name in cls.model_fields})
        raise ValueError(f"invalid [sae] section:\n{why}") from None
    return Resolved(cfg, sae, hook, manifest, target)


def transcoder_target(cfg: TrainConfig, hook: str, hooks: list[str]) -> str | None:
    """data.target_hook checked against the store's hooks and the [sae] section; None for an ordinary SAE."""
    extra = cfg.sae.model_extra or {}
    target = cfg.data.target_hook
    if "d_out" in extra:
        raise ValueError("[sae] d_out comes from the store; set data.target_hook to train a transcoder instead")
    if target is None:
        if extra.get("skip"):
            raise ValueError(
                "sae.skip makes a skip-transcoder, which needs data.target_hook (e.g. blocks.L.hook_mlp_out)"
            )
        return None
    if target not in hooks:  # on the fly, `hooks` holds the target
        raise ValueError(f"data.target_hook {target!r} is not in store {cfg.data.store}; it holds {hooks}")
    if target == hook:
        raise ValueError(f"data.target_hook equals data.hook ({hook}); leave target_hook unset to train an SAE")
    return target


def _architecture_of(sae: Any) -> Any:
    """The architecture an [sae] section (a dict or an SAESection) names, or the default."""
    if isinstance(sae, SAESection):
        sae = sae.model_extra or {}
    return sae.get("architecture", DEFAULT_ARCHITECTURE) if isinstance(sae, dict) else DEFAULT_ARCHITECTURE


def _sae_fields() -> list[str]:
    """Every field of a registered architecture's config, in order of first appearance."""
    return list(dict.fromkeys(f for a in ARCHITECTURES.values() for f in a.config.model_fields))
