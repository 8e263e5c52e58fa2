"""Model configuration: one frozen dataclass for every supported family, read from a Hugging Face config."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Family = Literal["llama", "gemma2", "gpt2", "qwen", "gemma3", "gpt_neox"]

# Hugging Face `model_type` -> our family. Mistral shares the Llama block; Qwen2/2.5 and Qwen3 share one.
HF_MODEL_TYPES: dict[str, Family] = {
    "llama": "llama",
    "mistral": "llama",
    "smollm2": "llama",
    "gemma2": "gemma2",
    "gpt2": "gpt2",
    "qwen2": "qwen",
    "qwen3": "qwen",
    "gemma3_text": "gemma3",
    "gpt_neox": "gpt_neox",
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
    attention_bias: bool = False  # q/k/v projection biases
    attn_out_bias: bool = False  # output projection bias (Llama and Qwen3 with attention_bias; Qwen2 has none)
    sliding_window: int | None = None
    # Gemma 2/3, and Qwen with windowed layers; None means every layer as `sliding_window` says.
    layer_types: tuple[str, ...] | None = None  # "sliding_attention" | "full_attention" per layer
    # Gemma 2/3 only.
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    query_pre_attn_scalar: float | None = None
    # Qwen3 and Gemma 3.
    qk_norm: bool = False  # RMSNorm over d_head on each query and key head, before rotary
    rope_local_theta: float | None = None  # Gemma 3: rotary base of sliding layers (global ones: rope_theta)
    # GPT-NeoX / Pythia.
    rotary_fraction: float = 1.0  # share of d_head that is rotated (`rotary_pct`), the rest passes through
    parallel_residual: bool = False  # attention and MLP both read the block input and add to the stream
    gelu_tanh: bool = False  # MLP activation: tanh-approximate GELU instead of the exact (erf) one
    name: str = ""

    def __post_init__(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")

    @property
    def n_params(self) -> int:
        """Parameter count, embeddings counted once when tied."""
        attn = self.d_model * self.d_head * (2 * self.n_heads + 2 * self.n_kv_heads)
        mlp = self.d_model * self.d_mlp * (2 if self.family in ("gpt2", "gpt_neox") else 3)
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
    if model_type == "gemma3":
        raise ValueError(
            f"{name or 'config'} is a multimodal Gemma 3 checkpoint (Gemma3ForConditionalGeneration); saelab "
            "reads the text-only Gemma3ForCausalLM (model_type gemma3_text), e.g. google/gemma-3-1b-pt"
        )
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(
            f"unsupported architecture {model_type!r} in {name or 'config'}; "
            f"saelab supports model_type in {sorted(HF_MODEL_TYPES)}"
        )
    family = HF_MODEL_TYPES[model_type]
    if family == "gpt_neox":
        return _gpt_neox(hf, name)
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
        tie_embeddings=hf.get("tie_word_embeddings", family in ("gemma2", "gemma3")),
        rope_theta=float(theta),
        rope_scaling=tuple(sorted(scaling.items())) if scaling else None,
        attention_bias=bool(hf.get("attention_bias", False)),
        sliding_window=hf.get("sliding_window"),
        name=name,
    )
    if family == "llama":
        if hf.get("use_sliding_window") is False:
            common["sliding_window"] = None
        return ModelConfig(family="llama", **common, attn_out_bias=common["attention_bias"])
    if family == "qwen":
        return _qwen(hf, common)
    n = common["n_layers"]
    pattern = hf.get("sliding_window_pattern", 6 if family == "gemma3" else 2)
    layer_types = hf.get("layer_types") or [
        "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)
    ]
    if common["attention_bias"]:
        raise ValueError(f"{name or 'config'}: {model_type} with attention_bias is not supported (no such release)")
    if family == "gemma3":
        common |= _gemma3_rope(hf, name)
    return ModelConfig(
        family=family,
        **common,
        qk_norm=family == "gemma3",
        layer_types=tuple(layer_types),
        attn_logit_softcap=hf.get("attn_logit_softcapping"),
        final_logit_softcap=hf.get("final_logit_softcapping"),
        query_pre_attn_scalar=hf.get("query_pre_attn_scalar", common["d_head"]),
    )


def _qwen(hf: dict[str, Any], common: dict[str, Any]) -> ModelConfig:
    """Qwen2/2.5: q/k/v biases always, no output bias. Qwen3: q/k norm, `attention_bias` on all four.
    Sliding windows apply only with `use_sliding_window`, to the layers from `max_window_layers` on."""
    qwen3 = hf["model_type"] == "qwen3"
    bias = bool(hf.get("attention_bias", False)) if qwen3 else True
    n, window = common["n_layers"], common["sliding_window"] if hf.get("use_sliding_window") else None
    layer_types = hf.get("layer_types") if window is not None else None
    if window is not None and not layer_types:
        first = hf.get("max_window_layers", 0)
        layer_types = ["sliding_attention" if i >= first else "full_attention" for i in range(n)]
    common |= dict(sliding_window=window, attention_bias=bias)
    layer_types = tuple(layer_types) if layer_types else None
    return ModelConfig(family="qwen", **common, layer_types=layer_types, qk_norm=qwen3, attn_out_bias=qwen3 and bias)


def _gemma3_rope(hf: dict[str, Any], name: str) -> dict[str, Any]:
    """Gemma 3's two rotary settings: global layers use `rope_theta` (1e6, linear scaling on the larger
    models), sliding ones `rope_local_base_freq` (10k). transformers >= 5 writes both under `rope_parameters`."""
    rope = hf.get("rope_parameters") or {}
    if "full_attention" in rope:
        full, local = rope["full_attention"], rope.get("sliding_attention") or {}
    else:
        full = {"rope_theta": hf.get("rope_theta", 1_000_000.0), **(hf.get("rope_scaling") or {})}
        local = {"rope_theta": hf.get("rope_local_base_freq", 10_000.0)}
    if local.get("rope_type", "default") != "default":
        raise ValueError(f"{name or 'config'}: Gemma 3 sliding layers with rope scaling are not supported")
    scaling = {k: v for k, v in full.items() if k != "rope_theta"}
    if scaling.get("rope_type", scaling.get("type", "default")) == "default":
        scaling = {}
    return dict(
        rope_theta=float(full.get("rope_theta", 1_000_000.0)),
        rope_scaling=tuple(sorted(scaling.items())) or None,
        rope_local_theta=float(local.get("rope_theta", 10_000.0)),
    )


_GELU = {"gelu": False, "gelu_new": True, "gelu_fast": True, "gelu_pytorch_tanh": True}


def _gpt_neox(hf: dict[str, Any], name: str) -> ModelConfig:
    """Pythia / GPT-NeoX: the rotary settings are `rotary_pct` / `rotary_emb_base` in older configs and
    `rope_parameters` (`partial_rotary_factor`, `rope_theta`) in those transformers >= 5 writes."""
    act = hf.get("hidden_act", "gelu")
    if act not in _GELU:
        raise ValueError(
            f"{name or 'config'}: GPT-NeoX hidden_act {act!r} is not supported; supported: {sorted(_GELU)}"
        )
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = rope.pop("rope_theta", hf.get("rotary_emb_base", 10000.0))
    fraction = rope.pop("partial_rotary_factor", hf.get("rotary_pct", 0.25))
    if rope.get("rope_type", rope.get("type", "default")) == "default":
        rope = {}
    d, h = hf["hidden_size"], hf["num_attention_heads"]
    bias = bool(hf.get("attention_bias", True))
    return ModelConfig(
        family="gpt_neox",
        n_layers=hf["num_hidden_layers"],
        d_model=d,
        n_heads=h,
        n_kv_heads=h,
        d_head=d // h,
        d_mlp=hf["intermediate_size"],
        vocab_size=hf["vocab_size"],
        max_positions=hf.get("max_position_embeddings", 2048),
        norm_eps=hf.get("layer_norm_eps", 1e-5),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        rope_theta=float(theta),
        rope_scaling=tuple(sorted(rope.items())) or None,
        attention_bias=bias,
        attn_out_bias=bias,
        rotary_fraction=float(fraction),
        parallel_residual=bool(hf.get("use_parallel_residual", True)),
        gelu_tanh=_GELU[act],
        name=name,
    )
