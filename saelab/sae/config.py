"""SAEConfig: the one typed configuration of an SAE (architecture, sizes, loss coefficients, kernels).

Scale-dependent defaults (`jumprelu_init_threshold`, `bandwidth`, `l0_coefficient`) assume inputs scaled to
unit mean squared norm, as in Gemma Scope (Lieberum et al. 2024) and the JumpReLU paper (Rajamanoharan et
al. 2024). When the trainer scales inputs to mean squared norm d_in instead, multiply the threshold and the
bandwidth by sqrt(d_in) (a pre-activation grows by that factor) and the L0 coefficient by d_in (the mse does).
The jumprelu registry entry declares unit input scaling, so the trainer uses it unless told otherwise.

A field applies to the architectures whose registry entry lists it (or to all, SHARED_FIELDS); setting one
that does not apply is an error, so a coefficient the architecture would ignore never passes silently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import field_validator, model_validator

from saelab.runtime.config import Config

if TYPE_CHECKING:
    from collections.abc import Iterable

    from saelab.sae.registry import Architecture

ArchitectureName = str  # a key of saelab.sae.registry.ARCHITECTURES, checked against the registry
ComputeDtype = Literal["float32", "bfloat16"]

# Fields every architecture reads; the others apply to the architectures whose registry entry lists them.
SHARED_FIELDS = frozenset({"architecture", "d_in", "d_sae", "dec_init_norm", "apply_b_dec_to_input", "compute_dtype"})
# An architecture whose loss takes a `target` (saelab.sae.transcoder) lists these among its fields.
TRANSCODER_FIELDS = frozenset({"d_out", "skip"})


class SAEConfig(Config):
    """Validated settings of one SAE; every field doubles as its `--help` text."""

    architecture: ArchitectureName = "topk"
    """Which SAE: relu (ReLU + L1), topk (TopK + AuxK), batchtopk (BatchTopK + AuxK, exported JumpReLU-like),
    jumprelu (threshold SAE with an L0 penalty), matryoshka (nested prefix losses over topk or batchtopk), or
    any other name registered in saelab.sae.registry."""
    d_in: int
    """Width of the hooked activation."""
    d_sae: int
    """Number of latents (dictionary size)."""
    k: int = 32
    """TopK family: latents kept per token (batchtopk: k * batch kept across the batch, k per token on
    average)."""
    k_aux: int | None = None
    """TopK family: dead latents used by the AuxK loss per token; None means d_in // 2 (the OpenAI paper's
    rule "a power of two close to d_model / 2", and SAELens' default), capped at d_sae."""
    aux_coefficient: float = 1 / 32
    """TopK family: weight of the AuxK loss (Gao et al. 2024, "Scaling and evaluating sparse autoencoders",
    sec. A.2)."""
    l1_coefficient: float = 1.0
    """relu: weight of the decoder-norm-weighted L1 penalty sum_i |f_i| * ||W_dec[i]|| (SAELens default)."""
    l0_coefficient: float = 1e-3
    """jumprelu: weight lambda of the L0 penalty in mse + lambda * L0 (scale as in the module docstring)."""
    jumprelu_init_threshold: float = 1e-3
    """jumprelu: initial per-latent threshold theta, in units of the scaled input (Gemma Scope: 0.001 with
    unit mean squared norm inputs; SAELens uses 0.01 with bandwidth 0.05)."""
    bandwidth: float = 1e-3
    """jumprelu: width eps of the rectangle kernel of the straight-through pseudo-derivatives; must match the
    input scale (Gemma Scope: 0.001 with unit mean squared norm inputs)."""
    threshold_ema_rate: float = 0.01
    """batchtopk (and matryoshka over it): rate of the exponential moving average of the smallest kept
    activation that becomes the shared inference threshold (SAELens' topk_threshold_lr)."""
    matryoshka_base: Literal["topk", "batchtopk"] = "batchtopk"
    """matryoshka: the sparsity rule whose codes the nested losses share."""
    matryoshka_prefixes: tuple[int, ...] | None = None
    """matryoshka: strictly increasing prefix sizes ending at d_sae; None means
    (d_sae / 8, d_sae / 4, d_sae / 2, d_sae)."""
    dec_init_norm: float = 0.1
    """Norm of every decoder row at init (SAELens default; 1.0 for a unit-norm decoder)."""
    apply_b_dec_to_input: bool = True
    """Subtract b_dec from the input before encoding (OpenAI's pre-bias, SAELens' default)."""
    compute_dtype: ComputeDtype = "float32"
    """Dtype of the matmuls; parameters, thresholds and all elementwise loss math stay float32."""
    d_out: int | None = None
    """Transcoder (relu, topk, batchtopk, jumprelu): width of the target it reconstructs, read from another hook
    than its input (Dunefsky et al. 2024, "Transcoders find interpretable LLM feature circuits"); None means an
    ordinary SAE that reconstructs its input. W_dec is (d_sae, d_out) and b_dec (d_out,), so b_dec lives in the
    output space and apply_b_dec_to_input defaults to false (SAELens refuses it for transcoders)."""
    skip: bool = False
    """Transcoder: add a linear skip term x @ W_skip, W_skip (d_in, d_out) initialised to 0, to the output
    (skip-transcoders, Paulo et al. 2025, "Transcoders beat sparse autoencoders for interpretability")."""
    kernels: Literal["sparse", "dense"] = "sparse"
    """topk and matryoshka-over-topk: `sparse` uses the custom-VJP kernels of saelab.sae.sparse (backward
    passes touch only the k chosen latents); `dense` builds (batch, d_sae) codes and lets JAX
    differentiate."""

    @field_validator("architecture")
    @classmethod
    def _registered(cls, name: str) -> str:
        _entry(name)
        return name

    @model_validator(mode="before")
    @classmethod
    def _transcoder_defaults(cls, data: Any) -> Any:
        """A transcoder's b_dec is in the output space: apply_b_dec_to_input is false unless set."""
        if isinstance(data, dict) and data.get("d_out") is not None and "apply_b_dec_to_input" not in data:
            return {**data, "apply_b_dec_to_input": False}
        return data

    @model_validator(mode="after")
    def _check(self) -> SAEConfig:
        if self.d_in < 1 or self.d_sae < 1:
            raise ValueError(f"d_in and d_sae must be positive, got d_in={self.d_in}, d_sae={self.d_sae}")
        for name in ("aux_coefficient", "l1_coefficient", "l0_coefficient"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        applies = SHARED_FIELDS | _entry(self.architecture).fields
        if "k" in applies:
            if not 1 <= self.k <= self.d_sae:
                raise ValueError(f"k must be in [1, d_sae={self.d_sae}], got k={self.k}")
            if self.k_aux is not None and not 1 <= self.k_aux <= self.d_sae:
                raise ValueError(f"k_aux must be in [1, d_sae={self.d_sae}], got k_aux={self.k_aux}")
        if self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth}")
        if self.jumprelu_init_threshold < 0:
            raise ValueError(f"jumprelu_init_threshold must be >= 0, got {self.jumprelu_init_threshold}")
        if not 0 < self.threshold_ema_rate <= 1:
            raise ValueError(f"threshold_ema_rate must be in (0, 1], got {self.threshold_ema_rate}")
        if self.dec_init_norm <= 0:
            raise ValueError(f"dec_init_norm must be > 0, got {self.dec_init_norm}")
        if self.matryoshka_prefixes is not None:
            _check_prefixes(self.matryoshka_prefixes, self.d_sae)
        elif "matryoshka_prefixes" in applies and self.d_sae < 8:
            raise ValueError(f"default matryoshka prefixes need d_sae >= 8, got {self.d_sae}; set them")
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
        check_fields(self.architecture, self.model_fields_set)
        return self

    @property
    def is_transcoder(self) -> bool:
        """Whether this SAE reconstructs another hook's activations (d_out set) rather than its input."""
        return self.d_out is not None

    @property
    def resolved_d_out(self) -> int:
        """Width of the reconstruction: d_out for a transcoder, d_in otherwise."""
        return self.d_in if self.d_out is None else self.d_out

    @property
    def resolved_k_aux(self) -> int:
        """k_aux with its default resolved."""
        return min(self.k_aux if self.k_aux is not None else max(self.d_in // 2, 1), self.d_sae)

    @property
    def resolved_prefixes(self) -> tuple[int, ...]:
        """Matryoshka prefix sizes with the default resolved."""
        if self.matryoshka_prefixes is not None:
            return self.matryoshka_prefixes
        return (self.d_sae // 8, self.d_sae // 4, self.d_sae // 2, self.d_sae)

    @property
    def uses_threshold(self) -> bool:
        """Whether the parameters carry a `threshold` (jumprelu, batchtopk, matryoshka over batchtopk)."""
        return _entry(self.architecture).has_threshold(self)


def check_fields(architecture: ArchitectureName, names: Iterable[str]) -> None:
    """ValueError naming each SAEConfig field in `names` that `architecture` does not read, and the
    architectures that do (names that are no field are left to SAEConfig's unknown-key error)."""
    from saelab.sae.registry import ARCHITECTURES

    entry = _entry(architecture)
    stray = sorted((set(names) & SAEConfig.model_fields.keys()) - SHARED_FIELDS - entry.fields)
    if not stray:
        return
    users = {f: sorted(a.name for a in ARCHITECTURES.values() if f in a.fields) for f in stray}
    detail = "; ".join(f"{f} applies to {', '.join(users[f]) or 'no registered architecture'}" for f in stray)
    verb, it = ("does", "it") if len(stray) == 1 else ("do", "them")
    raise ValueError(f"{', '.join(stray)} {verb} not apply to {architecture} SAEs ({detail}); remove {it}")


def _entry(name: str) -> Architecture:
    from saelab.sae.registry import get_architecture  # the registry imports this module's SAEConfig

    return get_architecture(name)


def _check_prefixes(prefixes: tuple[int, ...], d_sae: int) -> None:
    if len(prefixes) == 0:
        raise ValueError("matryoshka_prefixes must not be empty")
    if prefixes[0] < 1:
        raise ValueError(f"matryoshka_prefixes must be positive, got {list(prefixes)}")
    if any(b <= a for a, b in zip(prefixes, prefixes[1:], strict=False)):
        raise ValueError(f"matryoshka_prefixes must be strictly increasing, got {list(prefixes)}")
    if prefixes[-1] != d_sae:
        raise ValueError(f"matryoshka_prefixes must end at d_sae={d_sae}, got {list(prefixes)}")
