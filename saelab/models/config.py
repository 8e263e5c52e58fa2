"""Model configuration: one frozen dataclass for every supported family, read from a Hugging Face config."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Family = Literal["llama", "gemma2", "gpt2"]

# Hugging Face `model_type` -> our family. Mistral and Qwen2-without-bias share the Llama block.
HF_MODEL_TYPES: dict[str, Family] = {
    "llama": "llama",
    "mistral": "llama",
    "smollm2": "llama",
    "gemma2": "gemma2",
    "gpt2": "gpt2",
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything the forward pass needs to know about an architecture (no weights)."""

    family: Family
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
    rope_theta: float = 10000.0
    rope_scaling: tuple[tuple[str, Any], ...] | None = None  # llama3 / linear scaling, as sorted items
    attention_bias: bool = False
    sliding_window: int | None = None
    # Gemma 2 only.
    layer_types: tuple[str, ...] | None = None  # "sliding_attention" | "full_attention" per layer
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    query_pre_attn_scalar: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")

    @property
    def n_params(self) -> int:
        """Parameter count, embeddings counted once when tied."""
        attn = self.d_model * self.d_head * (2 * self.n_heads + 2 * self.n_kv_heads)
        mlp = self.d_model * self.d_mlp * (2 if self.family == "gpt2" else 3)
        emb = self.vocab_size * self.d_model * (1 if self.tie_embeddings else 2)
        if self.family == "gpt2":
            emb += self.max_positions * self.d_model
        return self.n_layers * (attn + mlp) + emb

    def is_sliding(self, layer: int) -> bool:
        if self.layer_types is not None:
            return self.layer_types[layer] == "sliding_attention"
        return self.sliding_window is not None


def config_from_hf(hf: dict[str, Any], name: str = "") -> ModelConfig:
    """Build a ModelConfig from a Hugging Face `config.json` dict; unsupported types list the supported ones."""
    model_type = hf.get("model_type", "")
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(
            f"unsupported architecture {model_type!r} in {name or 'config'}; "
            f"saelab supports model_type in {sorted(HF_MODEL_TYPES)}"
        )
    family = HF_MODEL_TYPES[model_type]
    if family == "gpt2":
        d = hf["n_embd"]
        return ModelConfig(
            family="gpt2",
            n_layers=hf["n_layer"],
            d_model=d,
            n_heads=hf["n_head"],
            n_kv_heads=hf["n_head"],
            d_head=d // hf["n_head"],
            d_mlp=hf.get("n_inner") or 4 * d,
            vocab_size=hf["vocab_size"],
            max_positions=hf["n_positions"],
            norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            tie_embeddings=True,
            attention_bias=True,
            name=name,
        )
    rope = hf.get("rope_parameters") or {}
    if "rope_type" in rope and "rope_theta" in rope:
        theta = rope["rope_theta"]
        scaling = None if rope.get("rope_type", "default") == "default" else rope
    else:
        theta = hf.get("rope_theta", 10000.0)
        scaling = hf.get("rope_scaling")
    d, h = hf["hidden_size"], hf["num_attention_heads"]
    common = dict(
        n_layers=hf["num_hidden_layers"],
        d_model=d,
        n_heads=h,
        n_kv_heads=hf.get("num_key_value_heads") or h,
        d_head=hf.get("head_dim") or d // h,
        d_mlp=hf["intermediate_size"],
        vocab_size=hf["vocab_size"],
        max_positions=hf.get("max_position_embeddings", 8192),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        tie_embeddings=hf.get("tie_word_embeddings", family == "gemma2"),
        rope_theta=float(theta),
        rope_scaling=tuple(sorted(scaling.items())) if scaling else None,
        attention_bias=bool(hf.get("attention_bias", False)),
        sliding_window=hf.get("sliding_window"),
        name=name,
    )
    if family == "llama":
        if hf.get("use_sliding_window") is False:
            common["sliding_window"] = None
        return ModelConfig(family="llama", **common)
    n = common["n_layers"]
    layer_types = hf.get("layer_types") or ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
    return ModelConfig(
        family="gemma2",
        **common,
        layer_types=tuple(layer_types),
        attn_logit_softcap=hf.get("attn_logit_softcapping"),
        final_logit_softcap=hf.get("final_logit_softcapping"),
        query_pre_attn_scalar=hf.get("query_pre_attn_scalar", common["d_head"]),
    )
