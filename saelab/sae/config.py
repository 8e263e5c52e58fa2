"""SAE configs: one class per architecture, holding only the fields that architecture reads.

`SAEConfig` holds what every SAE reads (sizes, decoder init, pre-bias, compute dtype); `TranscoderConfig` adds
the output side of a transcoder (d_out, skip); `AuxKConfig` the TopK family's k and AuxK loss. Each architecture
module defines its concrete class (`ReLUConfig` in relu.py, `TopKConfig` in topk.py, ...), whose `architecture`
is a one-value Literal, and its registry entry names that class, so `saelab.sae.sae_config({...})` picks the
class by `architecture` (a discriminated union that a registered architecture extends). Setting a field the
architecture does not read is an error naming the architectures that do, so a coefficient the architecture
would ignore never passes silently.

Scale-dependent defaults (JumpReLU's threshold and bandwidth, its L0 coefficient) assume inputs scaled to unit
mean squared norm, as in Gemma Scope (Lieberum et al. 2024) and the JumpReLU paper (Rajamanoharan et al.
2024). When the trainer scales inputs to mean squared norm d_in instead, multiply the threshold and the
bandwidth by sqrt(d_in) (a pre-activation grows by that factor) and the L0 coefficient by d_in (the mse does).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import model_validator

from saelab.runtime.config import Config
from saelab.sae.topk_select import TopKSelect

ArchitectureName = str  # a key of saelab.sae.registry.ARCHITECTURES
ComputeDtype = Literal["float32", "bfloat16"]
DEFAULT_ARCHITECTURE = "topk"  # what an [sae] table without `architecture` trains


class SAEConfig(Config):
    """The fields every SAE reads; the base of each architecture's config class, never built itself."""

    architecture: ArchitectureName
    """Which SAE: relu (ReLU + L1), topk (TopK + AuxK), batchtopk (BatchTopK + AuxK, exported JumpReLU-like),
    jumprelu (threshold SAE with an L0 penalty), matryoshka (nested prefix losses over topk or batchtopk), or
    any other name registered in saelab.sae.registry."""
    d_in: int
    """Width of the hooked activation."""
    d_sae: int
    """Number of latents (dictionary size)."""
    dec_init_norm: float = 0.1
    """Norm of every decoder row at init (SAELens default; 1.0 for a unit-norm decoder)."""
    apply_b_dec_to_input: bool = True
    """Subtract b_dec from the input before encoding (OpenAI's pre-bias, SAELens' default)."""
    compute_dtype: ComputeDtype = "float32"
    """Dtype of the matmuls; parameters, thresholds and all elementwise loss math stay float32."""

    @model_validator(mode="before")
    @classmethod
    def _only_read_fields(cls, data: Any) -> Any:
        if architecture_of(cls) is None:
            raise TypeError(
                f"{cls.__name__} is a base of the architectures' configs; build one of them (TopKConfig(d_in=..., "
                "d_sae=..., k=...)) or validate a dict naming its architecture with saelab.sae.sae_config"
            )
        if isinstance(data, dict):
            check_fields(cls, data)
        return data

    @model_validator(mode="after")
    def _check_sizes(self) -> SAEConfig:
        if self.d_in < 1 or self.d_sae < 1:
            raise ValueError(f"d_in and d_sae must be positive, got d_in={self.d_in}, d_sae={self.d_sae}")
        check_positive(self, "dec_init_norm")
        return self

    @property
    def is_transcoder(self) -> bool:
        """Whether this SAE reconstructs another hook's activations (d_out set) rather than its input."""
        return False

    @property
    def has_skip(self) -> bool:
        """Whether the output adds a linear skip term x @ W_skip (a skip-transcoder)."""
        return False

    @property
    def resolved_d_out(self) -> int:
        """Width of the reconstruction: d_out for a transcoder, d_in otherwise."""
        return self.d_in

    def initial_threshold(self) -> float | None:
        """The per-latent threshold the parameters start with; None for an architecture without one."""
        return None

    @property
    def uses_threshold(self) -> bool:
        """Whether the parameters carry a float32 `threshold` (d_sae,)."""
        return self.initial_threshold() is not None


class TranscoderConfig(SAEConfig):
    """An SAE that can also be a transcoder: its decoder may write another hook's width than it reads."""

    d_out: int | None = None
    """Transcoder: width of the target it reconstructs, read from another hook than its input (Dunefsky et al.
    2024, "Transcoders find interpretable LLM feature circuits"); None means an ordinary SAE that reconstructs
    its input. W_dec is (d_sae, d_out) and b_dec (d_out,), so b_dec lives in the output space and
    apply_b_dec_to_input defaults to false (SAELens refuses it for transcoders)."""
    skip: bool = False
    """Transcoder: add a linear skip term x @ W_skip, W_skip (d_in, d_out) initialised to 0, to the output
    (skip-transcoders, Paulo et al. 2025, "Transcoders beat sparse autoencoders for interpretability")."""

    @model_validator(mode="before")
    @classmethod
    def _transcoder_defaults(cls, data: Any) -> Any:
        """A transcoder's b_dec is in the output space: apply_b_dec_to_input is false unless set."""
        if isinstance(data, dict) and data.get("d_out") is not None and "apply_b_dec_to_input" not in data:
            return {**data, "apply_b_dec_to_input": False}
        return data

    @model_validator(mode="after")
    def _check_transcoder(self) -> TranscoderConfig:
        if self.d_out is not None:
            if self.d_out < 1:
                raise ValueError(f"d_out must be positive, got d_out={self.d_out}")
            if self.apply_b_dec_to_input:
                raise ValueError(
                    "apply_b_dec_to_input subtracts b_dec from the input, but a transcoder's b_dec lives in the "
                    "output space (d_out); set apply_b_dec_to_input = false"
                )
        if self.skip and self.d_out is None:
            raise ValueError("skip adds x @ W_skip to a transcoder's output; set d_out (data.target_hook) or remove it")
        return self

    @property
    def is_transcoder(self) -> bool:
        return self.d_out is not None

    @property
    def has_skip(self) -> bool:
        return self.skip

    @property
    def resolved_d_out(self) -> int:
        return self.d_in if self.d_out is None else self.d_out


class AuxKConfig(TranscoderConfig):
    """The TopK family (topk, batchtopk, matryoshka): k latents per token and OpenAI's AuxK loss."""

    k: int = 32
    """Latents kept per token (batchtopk: k * batch kept across the batch, k per token on average)."""
    k_aux: int | None = None
    """Dead latents used by the AuxK loss per token; None means d_in // 2 (the OpenAI paper's rule "a power of
    two close to d_model / 2", and SAELens' default), capped at d_sae."""
    aux_coefficient: float = 1 / 32
    """Weight of the AuxK loss (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", sec. A.2)."""
    topk_select: TopKSelect = "auto"
    """How the k largest pre-activations are found: `native` (saelab's multi-threaded CPU kernel,
    saelab.sae.cpu_kernels), `lax` (jax.lax.top_k), `blocks` (block maxima in one pass over all cores, then
    lax.top_k of k blocks and of their entries), or `auto`: native where it serves, else lax
    (saelab.sae.topk_select). All give the same latents, ties included; only the speed differs."""

    @model_validator(mode="after")
    def _check_k(self) -> AuxKConfig:
        check_k(self.k, self.k_aux, self.d_sae)
        check_nonnegative(self, "aux_coefficient")
        return self

    @property
    def resolved_k_aux(self) -> int:
        """k_aux with its default resolved."""
        return resolve_k_aux(self.k_aux, self.d_in, self.d_sae)


def architecture_of(cls: type[SAEConfig]) -> str | None:
    """The architecture a config class is for (its `architecture` default); None for a base class."""
    default = cls.model_fields["architecture"].default
    return default if isinstance(default, str) else None


# The config class of every registered architecture, by name; saelab.sae.registry's register fills it, so
# the error for a field an architecture does not read names the registered architectures that do.
REGISTERED: dict[str, type[SAEConfig]] = {}


def check_fields(cls: type[SAEConfig], names: Iterable[str]) -> None:
    """ValueError naming each SAE config field in `names` that `cls`'s architecture does not read, and the
    registered architectures that do (names no such architecture reads are left to the unknown-key error)."""
    others = list(REGISTERED.values())
    stray = sorted({n for n in names if n not in cls.model_fields and any(n in c.model_fields for c in others)})
    if not stray:
        return
    users = {f: sorted({architecture_of(c) for c in others if f in c.model_fields}) for f in stray}
    detail = "; ".join(f"{f} applies to {', '.join(users[f])}" for f in stray)
    verb, it = ("does", "it") if len(stray) == 1 else ("do", "them")
    raise ValueError(f"{', '.join(stray)} {verb} not apply to {architecture_of(cls)} SAEs ({detail}); remove {it}")


def check_nonnegative(cfg: SAEConfig, name: str) -> None:
    """ValueError when the coefficient `name` of `cfg` is negative."""
    if getattr(cfg, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")


def check_positive(cfg: SAEConfig, name: str) -> None:
    """ValueError unless the setting `name` of `cfg` is > 0."""
    if getattr(cfg, name) <= 0:
        raise ValueError(f"{name} must be > 0, got {getattr(cfg, name)}")


def resolve_k_aux(k_aux: int | None, d_in: int, d_sae: int) -> int:
    """AuxK's latents per token: `k_aux`, or d_in // 2 when None (the OpenAI paper's "a power of two close to
    d_model / 2", SAELens's default), capped at the number of latents."""
    return min(k_aux if k_aux is not None else max(d_in // 2, 1), d_sae)


def check_k(k: int | None, k_aux: int | None, d_sae: int) -> None:
    """ValueError unless k (None: not used) and k_aux (None: the default) are in [1, d_sae]."""
    if k is not None and not 1 <= k <= d_sae:
        raise ValueError(f"k must be in [1, d_sae={d_sae}], got k={k}")
    if k_aux is not None and not 1 <= k_aux <= d_sae:
        raise ValueError(f"k_aux must be in [1, d_sae={d_sae}], got k_aux={k_aux}")
