"""The SAE architectures by name: adding one is adding a module with encode/decode/loss and a `register` line.

An `Architecture` entry holds the architecture's pure functions and every fact the rest of saelab asks about
it (which config fields apply, threshold, decoder norm, input scale, SAELens names, plan's memory factor,
inspect's sparse codes, atoms' kind), so no other module compares architecture names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax

from saelab.sae import batchtopk, jumprelu, matryoshka, relu, topk
from saelab.sae.codes import TopK
from saelab.sae.config import SHARED_FIELDS, TRANSCODER_FIELDS, SAEConfig
from saelab.sae.losses import AuxState, LossOutput
from saelab.sae.params import SAEParams, check_params
from saelab.sae.scaling import InputScaling

EncodeFn = Callable[[SAEParams, jax.Array, SAEConfig], jax.Array]
SparseEncodeFn = Callable[[SAEParams, jax.Array, SAEConfig], TopK]
DecodeFn = Callable[..., jax.Array]
LossFn = Callable[..., tuple[jax.Array, LossOutput]]  # (params, x, cfg, aux_state=None, target=None)
UpdateFn = Callable[[SAEParams, LossOutput, SAEConfig], SAEParams]
ThresholdFn = Callable[[SAEConfig], float | None]


def _unchanged(params: SAEParams, out: LossOutput, cfg: SAEConfig) -> SAEParams:
    return params


def _no_threshold(cfg: SAEConfig) -> None:
    return None


@dataclass(frozen=True)
class Architecture:
    """One SAE architecture: its pure functions and the facts the trainer, exporter, plan and inspect need."""

    name: str
    encode: EncodeFn  # (params, x (batch, d_in), cfg) -> codes (batch, d_sae), inference mode
    decode: DecodeFn  # (params, codes (batch, d_sae), compute_dtype="float32") -> x_hat (batch, d_in)
    loss: LossFn  # (params, x, cfg, aux_state=None[, target]) -> (loss, LossOutput), training mode; target
    #               (batch, d_out) only for architectures listing TRANSCODER_FIELDS
    fields: frozenset[str] = frozenset()  # SAEConfig fields it reads beyond SHARED_FIELDS; others are errors
    update_threshold: UpdateFn = _unchanged  # after each optimiser step (the BatchTopK threshold EMA)
    initial_threshold: ThresholdFn = _no_threshold  # the per-latent threshold at init; None: no threshold
    encode_sparse: SparseEncodeFn | None = None  # exact per-token codes (vals, idx), each (batch, cfg.k)
    unit_norm_decoder: bool = False  # default of train.unit_norm_decoder
    input_scaling: InputScaling = "sqrt_d"  # default of train.input_scaling: the scale its defaults assume
    saelens_name: str | Callable[[SAEConfig], str] = "standard"  # SAELens architecture it exports as
    saelens_imports: tuple[str, ...] = ()  # SAELens architectures that load as this one
    saelens_keys: tuple[str, ...] = ()  # SAELens cfg.json keys copied into SAEConfig on such a load
    saelens_transcoder: str | None = None  # SAELens transcoder class its transcoders export as (and load from)
    saelens_skip_transcoder: str | None = None  # the same for skip-transcoders
    latent_arrays: float = 4.0  # plan: float32 (batch rows x latents) temporaries of one train step
    atoms: bool = False  # atoms analysis: a threshold-activated dictionary (atoms) rather than features

    def has_threshold(self, cfg: SAEConfig) -> bool:
        """Whether parameters for `cfg` carry a float32 `threshold` (d_sae,)."""
        return self.initial_threshold(cfg) is not None

    def saelens_architecture(self, cfg: SAEConfig) -> str:
        """The SAELens inference architecture an export of `cfg` is written as; a transcoder without a SAELens
        class (SAELens has none for TopK) is written under saelab's own name, `<name>_[skip_]transcoder`,
        which saelab loads and SAELens refuses by name."""
        if cfg.is_transcoder:
            theirs = self.saelens_skip_transcoder if cfg.skip else self.saelens_transcoder
            return theirs or f"{self.name}_{'skip_' if cfg.skip else ''}transcoder"
        return self.saelens_name if isinstance(self.saelens_name, str) else self.saelens_name(cfg)


ARCHITECTURES: dict[str, Architecture] = {}


def register(entry: Architecture) -> Architecture:
    """Add `entry` under its name; ValueError for a taken name or SAELens import, or a field SAEConfig lacks."""
    if entry.name in ARCHITECTURES:
        raise ValueError(f"SAE architecture {entry.name!r} is already registered")
    taken = {s: a.name for a in ARCHITECTURES.values() for s in a.saelens_imports}
    clash = sorted(s for s in entry.saelens_imports if s in taken)
    if clash:
        raise ValueError(f"architecture {entry.name!r}: SAELens {clash} already load as {[taken[s] for s in clash]}")
    unknown = sorted(entry.fields - SAEConfig.model_fields.keys())
    if unknown:
        raise ValueError(f"architecture {entry.name!r} declares fields {unknown} that SAEConfig does not have")
    if entry.fields & SHARED_FIELDS:
        raise ValueError(f"architecture {entry.name!r}: {sorted(entry.fields & SHARED_FIELDS)} apply to every SAE")
    ARCHITECTURES[entry.name] = entry
    return entry


_TOPK = frozenset({"k", "k_aux", "aux_coefficient"}) | TRANSCODER_FIELDS
_JUMPRELU = frozenset({"l0_coefficient", "jumprelu_init_threshold", "bandwidth"}) | TRANSCODER_FIELDS
_MATRYOSHKA = _TOPK | {"kernels", "threshold_ema_rate", "matryoshka_base", "matryoshka_prefixes"}

register(
    Architecture(
        "relu",
        relu.encode,
        relu.decode,
        relu.loss,
        frozenset({"l1_coefficient"}) | TRANSCODER_FIELDS,
        saelens_name="standard",
        saelens_imports=("standard",),
        saelens_transcoder="transcoder",
        saelens_skip_transcoder="skip_transcoder",
        latent_arrays=3.0,
    )
)
register(
    Architecture(
        "topk",
        topk.encode,
        topk.decode,
        topk.loss,
        _TOPK | {"kernels"},
        encode_sparse=topk.encode_sparse,
        unit_norm_decoder=True,
        saelens_name="topk",
        saelens_imports=("topk",),
        saelens_keys=("k",),
        latent_arrays=3.0,  # 4.0 before AuxK's custom VJP stopped saving every branch's residuals
    )
)
register(
    Architecture(
        "batchtopk",
        batchtopk.encode,
        batchtopk.decode,
        batchtopk.loss,
        _TOPK | {"threshold_ema_rate"},
        update_threshold=batchtopk.update_threshold,
        initial_threshold=lambda cfg: 0.0,  # the EMA starts at 0, as in SAELens
        unit_norm_decoder=True,
        saelens_name="jumprelu",  # one shared threshold at inference: a JumpReLU SAE, as SAELens saves it
        saelens_imports=("batchtopk",),
        saelens_transcoder="jumprelu_transcoder",
        latent_arrays=6.5,
    )
)
register(
    Architecture(
        "jumprelu",
        jumprelu.encode,
        jumprelu.decode,
        jumprelu.loss,
        _JUMPRELU,
        initial_threshold=lambda cfg: cfg.jumprelu_init_threshold,
        input_scaling="unit",  # the threshold and bandwidth defaults are Gemma Scope's, for unit inputs
        saelens_name="jumprelu",
        saelens_imports=("jumprelu",),
        saelens_transcoder="jumprelu_transcoder",
        latent_arrays=6.0,
        atoms=True,
    )
)
register(
    Architecture(
        "matryoshka",
        matryoshka.encode,
        matryoshka.decode,
        matryoshka.loss,
        _MATRYOSHKA,
        update_threshold=matryoshka.update_threshold,
        initial_threshold=matryoshka.initial_threshold,
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


def encode(params: SAEParams, x: jax.Array, cfg: SAEConfig) -> jax.Array:
    """Inference codes (batch, d_sae) of the architecture `cfg` names."""
    return get_architecture(cfg.architecture).encode(params, x, cfg)


def loss(
    params: SAEParams,
    x: jax.Array,
    cfg: SAEConfig,
    aux_state: AuxState | None = None,
    target: jax.Array | None = None,
) -> tuple[jax.Array, LossOutput]:
    """Training loss of the architecture `cfg` names (a transcoder's against `target`); checks the parameters
    against the config first."""
    check_params(params, cfg.d_in, cfg.d_sae, cfg.uses_threshold, cfg.d_out, cfg.skip)
    extra = () if target is None else (target,)  # an architecture without transcoders takes no target
    return get_architecture(cfg.architecture).loss(params, x, cfg, aux_state, *extra)
