"""Configuration of a multi-SAE run: shared [data], [sae], [optim], [train] sections and a `[[saes]]` list.

Every SAE of the list is a normal `TrainConfig`: the shared sections with the entry's own `sae`, `optim` and
per-SAE `train` fields set over them, named `train.name/<entry name>`. What makes the SAEs train on the same
batches (the store, batch size, shuffle seed, BOS rule, token count) and when they log and checkpoint is
shared and cannot be set per SAE; the hook, the SAE itself, its optimiser and its initialisation can.

    [data]
    store = "activations/demo"
    batch_size = 4096
    [sae]
    architecture = "topk"
    expansion = 8
    [train]
    name = "sweep"
    tokens = 500_000
    [[saes]]
    name = "k16"
    sae = { k = 16 }
    [[saes]]
    name = "relu"
    sae = { architecture = "relu", l1_coefficient = 5.0 }

A shared `train.input_scaling` applies to every SAE; left unset, each SAE takes its architecture's default,
as a single run does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from saelab.runtime.config import Config, explain_errors
from saelab.runtime.rundir import RunDir
from saelab.train.config import OptimConfig, Paced, SAESection, TrainConfig, TrainSection, read_toml
from saelab.train.data_source import DataSource, StoreData
from saelab.train.multi.layers import expand_each_layer

# [train] fields one SAE may set for itself; the others pace the shared loop or place the run.
MEMBER_TRAIN_FIELDS = frozenset(
    {"seed", "input_scaling", "b_dec_init", "unit_norm_decoder", "dead_tokens", "dense_threshold"}
)


class MemberConfig(Config):
    """One SAE of a multi-SAE run: its sub-run name and what it sets over the shared sections."""

    name: str
    """Sub-run name: the SAE trains in `train.out/train.name/<name>/`, a normal run directory."""
    hook: str | None = None
    """Hook point of the store it trains on; None means data.hook (or the store's only hook)."""
    target_hook: str | None = None
    """A transcoder's target hook (data.target_hook for this SAE); None means data.target_hook."""
    sae: dict[str, Any] = {}
    """[sae] fields set over the shared [sae]: architecture, expansion or d_sae, k, coefficients, ..."""
    optim: dict[str, Any] = {}
    """[optim] fields set over the shared [optim] (its own learning rate, schedule, ...)."""
    train: dict[str, Any] = {}
    """Per-SAE [train] fields set over the shared [train]: seed, input_scaling, b_dec_init,
    unit_norm_decoder, dead_tokens, dense_threshold."""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in {".", ".."}:
            raise ValueError(f"SAE name {name!r} must be a plain directory name (letters, digits, _ . -)")
        return name

    @field_validator("train")
    @classmethod
    def _own_train_fields(cls, train: dict[str, Any]) -> dict[str, Any]:
        shared = sorted(set(train) - MEMBER_TRAIN_FIELDS)
        if shared:
            raise ValueError(
                f"train.{', train.'.join(shared)} cannot differ between the SAEs of one run (they share the "
                f"loop); set it in the shared [train] section. Per SAE: {sorted(MEMBER_TRAIN_FIELDS)}"
            )
        return train


class MultiTrainConfig(Paced, Config):
    """Several SAEs trained on the same batches in one run; each entry of `saes` is one SAE."""

    data: DataSource = StoreData()
    """Shared: the store, batch size, shuffle seed and BOS rule (data.hook is the default hook)."""
    sae: SAESection = SAESection()
    """The [sae] fields every SAE starts from."""
    optim: OptimConfig = OptimConfig()
    """The [optim] fields every SAE starts from."""
    train: TrainSection = TrainSection()
    """Shared: train.name names the parent directory; tokens, logging, checkpoints, mesh and tracking."""
    saes: list[MemberConfig] = Field(min_length=1)
    """The SAEs, each with its name and its own fields; `[each_layer]` adds one per layer from a template
    (saelab.train.multi.layers)."""
    stack: bool = False
    """Train SAEs that differ only in their seed (same hook, SAE, optimiser) as one vmapped step over
    stacked parameters; off, every SAE is its own part of the one jitted step. Off by default: on CPU the
    vmapped TopK step is slower per SAE (AuxK's skip-when-nothing-is-dead `lax.cond` becomes a select
    that computes every branch under vmap), and batched GEMMs round differently from a separate run's."""

    @model_validator(mode="before")
    @classmethod
    def _each_layer(cls, data: Any) -> Any:
        """`[each_layer]` written out as `[[saes]]` entries (saelab.train.multi.layers)."""
        return expand_each_layer(data)

    @model_validator(mode="after")
    def _check(self) -> MultiTrainConfig:
        names = [m.name for m in self.saes]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"SAE names repeat: {repeated}; each SAE needs its own name (its sub-run)")
        self.members()  # every SAE's config is valid, before any compute
        return self

    def members(self) -> list[TrainConfig]:
        """One full TrainConfig per SAE, in `saes` order (`train.run` would train each alone)."""
        return [self._member(m) for m in self.saes]

    def _member(self, m: MemberConfig) -> TrainConfig:
        base = lambda section: section.model_dump(exclude_unset=True)
        own = {"hook": m.hook, "target_hook": m.target_hook}
        data = base(self.data) | {k: v for k, v in own.items() if v is not None}
        train = base(self.train) | m.train | {"name": f"{self.train.name}/{m.name}"}
        try:
            return TrainConfig(data=data, sae=base(self.sae) | m.sae, optim=base(self.optim) | m.optim, train=train)
        except ValidationError as e:
            raise ValueError(f"SAE {m.name!r}: invalid config:\n{explain_errors(e, TrainConfig)}") from None

    def dump(self) -> dict[str, Any]:
        """The config as written to `multi.json`: the fields that were set, so architecture defaults (an unset
        shared input_scaling) still follow each SAE when it is read back."""
        return self.model_dump(mode="json", exclude_unset=True)


def is_multi_config(path: str | Path | None) -> bool:
    """Whether the TOML file `path` is a multi-SAE config (it lists `saes` or has an `each_layer` template)."""
    return path is not None and Path(path).exists() and bool({"saes", "each_layer"} & set(read_toml(path)))


def load_multi_config(path: str | Path | None = None, overrides: list[str] = ()) -> MultiTrainConfig:
    """TOML file + `section.key=value` overrides of the shared sections, as `train.load_config` reads them."""
    try:
        return MultiTrainConfig(**read_toml(path, overrides))
    except ValidationError as e:
        why = explain_errors(e, MultiTrainConfig)
        raise ValueError(f"invalid multi-SAE training config{f' {path}' if path else ''}:\n{why}") from None


def load_multi_run_config(run_dir: str | Path) -> MultiTrainConfig:
    """The config a multi-SAE run was started with (what `saelab train --resume RUN` continues)."""
    f = RunDir(run_dir).multi_config
    if not f.exists():
        raise FileNotFoundError(f"{run_dir} is not a multi-SAE training run (no {f.name})")
    return MultiTrainConfig(**json.loads(f.read_text()))
