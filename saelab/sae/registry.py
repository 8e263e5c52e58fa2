"""The SAE architectures by name: adding one is adding a module with its config class, encode/decode/loss and
a `register` line.

An `Architecture` entry holds the architecture's config class (`sae_config` validates a dict by the
`architecture` it names), its pure functions and every fact the rest of saelab asks about it (input scale,
SAELens names, plan's memory factor, inspect's sparse codes, atoms' kind), so no other module compares
architecture names. `Architecture.loss` does what every loss needs first (check the parameters against the
config, default the AuxK state, pick the reconstruction target) and calls the architecture's `objective`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import jax

import saelab.sae.batchtopk as batchtopk
import saelab.sae.clt as clt
import saelab.sae.jumprelu as jumprelu
import saelab.sae.matryoshka as matryoshka
import saelab.sae.relu as relu
import saelab.sae.topk as topk
from saelab.sae.batchtopk import BatchTopKConfig
from saelab.sae.clt import CLTConfig
from saelab.sae.codes import TopK
from saelab.sae.config import DEFAULT_ARCHITECTURE, REGISTERED, SAEConfig, architecture_of
from saelab.sae.jumprelu import JumpReLUConfig
from saelab.sae.losses import AuxState, LossOutput, resolve_aux_state
from saelab.sae.matryoshka import MatryoshkaConfig
from saelab.sae.params import SAEParams, check_params
from saelab.sae.relu import ReLUConfig
from saelab.sae.scaling import InputScaling
from saelab.sae.topk import TopKConfig
from saelab.sae.transcoder import target_of, with_skip

EncodeFn = Callable[[SAEParams, jax.Array, Any], jax.Array]
SparseEncodeFn = Callable[[SAEParams, jax.Array, Any], TopK]
DecodeFn = Callable[..., jax.Array]
# (params, x (batch, d_in), cfg, aux, y (batch, d_out): x or a transcoder's target) -> (loss, LossOutput)
ObjectiveFn = Callable[[SAEParams, jax.Array, Any, AuxState, jax.Array], tuple[jax.Array, LossOutput]]
UpdateFn = Callable[[SAEParams, LossOutput, Any], SAEParams]


def _unchanged(params: SAEParams, out: LossOutput, cfg: SAEConfig) -> SAEParams:
    return params


@dataclass(frozen=True)
class Architecture:
    """One SAE architecture: its config class, pure functions and the facts the trainer, exporter, plan and
    inspect need."""

    name: str
    config: type[SAEConfig]  # the fields it reads; its `architecture` is a Literal of `name`
    encode: EncodeFn  # (params, x (batch, d_in), cfg) -> codes (batch, d_sae), inference mode
    decode: DecodeFn  # (params, codes (batch, d_sae), compute_dtype="float32") -> x_hat (batch, d_in)
    objective: ObjectiveFn  # the training loss, called by `loss` once its arguments are resolved
    update_threshold: UpdateFn = _unchanged  # after each optimiser step (the BatchTopK threshold EMA)
    encode_sparse: SparseEncodeFn | None = None  # exact per-token codes (vals, idx), each (batch, cfg.k)
    unit_norm_decoder: bool = False  # default of train.unit_norm_decoder
    folds_decoder_norm: bool = False  # codes scale with their pre-activations: decoder norms fold exactly
    input_scaling: InputScaling = "sqrt_d"  # default of train.input_scaling: the scale its defaults assume
    saelens_name: str | Callable[[Any], str] = "standard"  # SAELens architecture it exports as
    saelens_imports: tuple[str, ...] = ()  # SAELens architectures that load as this one
    saelens_keys: tuple[str, ...] = ()  # SAELens cfg.json keys copied into its config on such a load
    saelens_transcoder: str | None = None  # SAELens transcoder class its transcoders export as (and load from)
    saelens_skip_transcoder: str | None = None  # the same for skip-transcoders
    latent_arrays: float = 4.0  # plan: float32 (batch rows x latents) temporaries of one train step
    atoms: bool = False  # atoms analysis: a threshold-activated dictionary (atoms) rather than features
    own_loss: Callable[..., tuple[jax.Array, LossOutput]] | None = None  # a loss over other params (the CLT's)

    def loss(
        self,
        params: SAEParams,
        x: jax.Array,
        cfg: SAEConfig,
        aux_state: AuxState | None = None,
        target: jax.Array | None = None,
    ) -> tuple[jax.Array, LossOutput]:
        """Training loss (training mode) of x (batch, d_in), against `target` (batch, d_out) for a transcoder;
        checks the parameters against the config first; no AuxState means no dead latents, full sparsity."""
        if self.own_loss is not None:  # its own parameter layout, shapes and checks (saelab.sae.clt)
            return self.own_loss(params, x, cfg, aux_state, target)
        check_params(params, cfg.d_in, cfg.d_sae, cfg.uses_threshold, cfg.resolved_d_out, cfg.has_skip)
        aux = resolve_aux_state(aux_state, params.d_sae)
        return self.objective(params, x, cfg, aux, target_of(x, target, params))

    def saelens_architecture(self, cfg: SAEConfig) -> str:
        """The SAELens inference architecture an export of `cfg` is written as; a transcoder without a SAELens
        class (SAELens has none for TopK) is written under saelab's own name, `<name>_[skip_]transcoder`,
        which saelab loads and SAELens refuses by name."""
        if cfg.is_transcoder:
            theirs = self.saelens_skip_transcoder if cfg.has_skip else self.saelens_transcoder
            return theirs or f"{self.name}_{'skip_' if cfg.has_skip else ''}transcoder"
        return self.saelens_name if isinstance(self.saelens_name, str) else self.saelens_name(cfg)


ARCHITECTURES: dict[str, Architecture] = {}


def register(entry: Architecture) -> Architecture:
    """Add `entry` under its name; ValueError for a taken name or SAELens import, or a config class for another
    architecture."""
    if entry.name in ARCHITECTURES:
        raise ValueError(f"SAE architecture {entry.name!r} is already registered")
    taken = {s: a.name for a in ARCHITECTURES.values() for s in a.saelens_imports}
    clash = sorted(s for s in entry.saelens_imports if s in taken)
    if clash:
        raise ValueError(f"architecture {entry.name!r}: SAELens {clash} already load as {[taken[s] for s in clash]}")
    if architecture_of(entry.config) != entry.name:
        raise ValueError(
            f"architecture {entry.name!r}: its config class {entry.config.__name__} must have "
            f'architecture: Literal["{entry.name}"] = "{entry.name}"'
        )
    ARCHITECTURES[entry.name] = entry
    REGISTERED[entry.name] = entry.config
    return entry


def unregister(name: str) -> Architecture:
    """Remove the architecture called `name` (a test's or a plugin's); ValueError if it is not registered."""
    entry = get_architecture(name)
    del ARCHITECTURES[name], REGISTERED[name]
    return entry


def _builtin(module: ModuleType, config: type[SAEConfig], **facts: Any) -> Architecture:
    """The entry of one of saelab's architecture modules: its config class and functions, and `facts`."""
    return Architecture(architecture_of(config), config, module.encode, module.decode, module.loss, **facts)


register(
    _builtin(
        relu,
        ReLUConfig,
        folds_decoder_norm=True,
        saelens_name="standard",
        saelens_imports=("standard",),
        saelens_transcoder="transcoder",
        saelens_skip_transcoder="skip_transcoder",
        latent_arrays=3.0,
    )
)
register(
    _builtin(
        topk,
        TopKConfig,
        encode_sparse=topk.encode_sparse,
        unit_norm_decoder=True,
        saelens_name="topk",
        saelens_imports=("topk",),
        saelens_keys=("k",),
        latent_arrays=3.0,  # AuxK's custom VJP keeps only the chosen branch's residuals
    )
)
register(
    _builtin(
        batchtopk,
        BatchTopKConfig,
        update_threshold=batchtopk.update_threshold,
        unit_norm_decoder=True,
        saelens_name="jumprelu",  # one shared threshold at inference: a JumpReLU SAE, as SAELens saves it
        saelens_imports=("batchtopk",),
        saelens_transcoder="jumprelu_transcoder",
        latent_arrays=6.5,
    )
)
register(
    _builtin(
        jumprelu,
        JumpReLUConfig,
        input_scaling="unit",  # the threshold and bandwidth defaults are Gemma Scope's, for unit inputs
        folds_decoder_norm=True,
        saelens_name="jumprelu",
        saelens_imports=("jumprelu",),
        saelens_transcoder="jumprelu_transcoder",
        latent_arrays=6.0,
        atoms=True,
    )
)
register(
    _builtin(
        clt,
        CLTConfig,
        own_loss=clt.train_loss,  # x (batch, L, d_in) MLP inputs, target (batch, L, d_out) MLP outputs
        saelens_name="clt",  # exported in circuit-tracer's format (saelab.sae.formats.circuit_tracer)
        latent_arrays=3.0,  # per layer; plan reads the entry of the CLT's activation (topk 3.0, jumprelu 6.0)
    )
)
register(
    _builtin(
        matryoshka,
        MatryoshkaConfig,
        update_threshold=matryoshka.update_threshold,
        unit_norm_decoder=True,
        saelens_name=matryoshka.saelens_name,
        latent_arrays=7.0,
    )
)


def get_architecture(name: str) -> Architecture:
    """The architecture called `name`; ValueError listing the known ones otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown SAE architecture {name!r}; known: {sorted(ARCHITECTURES)}") from None


architecture = get_architecture  # shorter alias, as saelab.train spells it


def sae_config(fields: Mapping[str, Any] | None = None, /, **more: Any) -> SAEConfig:
    """The config of the architecture that `fields` (and keyword fields) name by `architecture` (default
    topk), validated by that architecture's class: the discriminated union of the registered configs."""
    data = {**(fields or {}), **more}
    return get_architecture(data.get("architecture", DEFAULT_ARCHITECTURE)).config(**data)


def encode(params: SAEParams, x: jax.Array, cfg: SAEConfig) -> jax.Array:
    """Inference codes (batch, d_sae) of the architecture `cfg` names."""
    return get_architecture(cfg.architecture).encode(params, x, cfg)


def forward(params: SAEParams, x: jax.Array, cfg: SAEConfig) -> jax.Array:
    """Inference output (batch, d_out): the reconstruction of the target (of x itself for an SAE)."""
    arch = get_architecture(cfg.architecture)
    return with_skip(params, x, arch.decode(params, arch.encode(params, x, cfg), cfg.compute_dtype), cfg)


def loss(
    params: SAEParams, x: jax.Array, cfg: SAEConfig, aux_state: AuxState | None = None, target: jax.Array | None = None
) -> tuple[jax.Array, LossOutput]:
    """Training loss of the architecture `cfg` names (`Architecture.loss`)."""
    return get_architecture(cfg.architecture).loss(params, x, cfg, aux_state, target)
