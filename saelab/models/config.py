"""Model configuration: one frozen dataclass that drives the one transformer block of every family.

The fields say what the block does (norm kind and placement, rotary or learned positions, MLP kind, biases,
soft-capping, windows), so the block never asks which family it is running. Each family file maps its
Hugging Face config onto these fields; `config_from_hf` looks the family up in `models.registry`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

NormKind = Literal["rms", "layer"]
# Where a block normalises: "pre" before attention and MLP (Llama, GPT-2), "sandwich" before and after each
# (Gemma 2/3), "post" only after each, on what enters the residual stream (OLMo 2's placement).
NormPlacement = Literal["pre", "sandwich", "post"]
Activation = Literal["silu", "gelu", "gelu_tanh"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything the forward pass needs to know about an architecture (no weights). The defaults are Llama's."""

    family: str  # the registry name (`models.registry.FAMILIES`) whose file loads the weights
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    vocab_size: int
    max_positions: int
    norm_eps: float
    tie_embeddings: bool = True
    # Norms: RMSNorm or LayerNorm (with bias); Gemma stores RMSNorm weights as w - 1 and uses 1 + w (offset 1).
    norm: NormKind = "rms"
    norm_offset: float = 0.0
    norm_placement: NormPlacement = "pre"
    parallel_residual: bool = False  # attention and MLP both read the block input (GPT-NeoX / Pythia)
    # Positions: rotary on q and k, or a learned table added to the embedding (GPT-2).
    positions: Literal["rope", "learned"] = "rope"
    rope_theta: float = 10000.0
    rope_scaling: tuple[tuple[str, Any], ...] | None = None  # llama3 / linear scaling, as sorted items
    rope_local_theta: float | None = None  # Gemma 3: rotary base of sliding layers (global ones: rope_theta)
    rotary_fraction: float = 1.0  # share of d_head that is rotated (`rotary_pct`), the rest passes through
    embed_scale: bool = False  # Gemma: embeddings times sqrt(d_model)
    # Attention.
    attention_bias: bool = False  # q/k/v projection biases
    attn_out_bias: bool = False  # output projection bias
    qk_norm: bool = False  # RMSNorm over d_head on each query and key head, before rotary (Qwen3, Gemma 3)
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None  # "sliding_attention" | "full_attention" per layer
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    query_pre_attn_scalar: float | None = None  # scores scale by its -1/2 power (default d_head)
    # MLP: gated act(h @ W_gate) * (h @ W_in) @ W_out, or plain act(h @ W_in + b_in) @ W_out + b_out.
    mlp_gated: bool = True
    activation: Activation = "silu"
    name: str = ""

    def __post_init__(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.parallel_residual and self.norm_placement != "pre":
            raise ValueError("a parallel residual block needs norm_placement='pre' (both halves read its input)")

    @property
    def n_params(self) -> int:
        """Parameter count, embeddings counted once when tied."""
        attn = self.d_model * self.d_head * (2 * self.n_heads + 2 * self.n_kv_heads)
        mlp = self.d_model * self.d_mlp * (3 if self.mlp_gated else 2)
        emb = self.vocab_size * self.d_model * (1 if self.tie_embeddings else 2)
        if self.positions == "learned":
            emb += self.max_positions * self.d_model
        return self.n_layers * (attn + mlp) + emb

    def is_sliding(self, layer: int) -> bool:
        if self.layer_types is not None:
            return self.layer_types[layer] == "sliding_attention"
        return self.sliding_window is not None


def config_from_hf(hf: dict[str, Any], name: str = "") -> ModelConfig:
    """Build a ModelConfig from a Hugging Face `config.json` dict with the family that reads its `model_type`."""
    from saelab.models.registry import family_of  # the registry imports the family files, which import this

    return family_of(hf, name).config_from_hf(hf, name)


def mha_shape(n_layers: int, d_model: int, n_heads: int, d_mlp: int, vocab_size: int) -> dict[str, int]:
    """The shape fields of a model whose every query head has its own key and value head, d_head = d_model / heads
    (GPT-2, GPT-NeoX)."""
    return dict(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_heads,
        d_head=d_model // n_heads,
        d_mlp=d_mlp,
        vocab_size=vocab_size,
    )


def rope_items(rope: dict[str, Any]) -> tuple[tuple[str, Any], ...] | None:
    """Rope scaling as sorted items, None where it is the default (no scaling)."""
    kind = rope.get("rope_type", rope.get("type", "default"))
    return None if not rope or kind == "default" else tuple(sorted(rope.items()))
