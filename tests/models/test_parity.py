"""Each family against transformers on torch, on small randomly initialised models saved to a temp dir."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.models import Model
from tests.peer_modules import needed

torch = needed("torch")
import transformers  # noqa: E402

from .torch_reference import assert_matches  # noqa: E402

VOCAB = 97
SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, vocab_size=VOCAB)
# Gemma 2 and 3 alike: GQA, a head width other than d_model / n_heads, a 4-token window, their query scale.
GEMMA = dict(num_key_value_heads=2, head_dim=16, sliding_window=4, query_pre_attn_scalar=24, max_position_embeddings=64)
CONFIGS = {
    "llama-gqa-untied": lambda: transformers.LlamaConfig(
        **SMALL, num_key_value_heads=2, tie_word_embeddings=False, max_position_embeddings=64
    ),
    "llama3-rope-scaling": lambda: transformers.LlamaConfig(
        **SMALL,
        num_key_value_heads=1,
        max_position_embeddings=64,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8,
        },
    ),
    "llama-bias": lambda: transformers.LlamaConfig(
        **SMALL, num_key_value_heads=2, attention_bias=True, max_position_embeddings=64
    ),
    "mistral-sliding": lambda: transformers.MistralConfig(
        **SMALL, num_key_value_heads=2, sliding_window=5, max_position_embeddings=64
    ),
    "gemma2": lambda: transformers.Gemma2Config(
        **SMALL, **GEMMA, attn_logit_softcapping=5.0, final_logit_softcapping=3.0
    ),
    "gpt2": lambda: transformers.GPT2Config(n_embd=64, n_layer=3, n_head=4, vocab_size=VOCAB, n_positions=64),
    "qwen2-tied": lambda: transformers.Qwen2Config(
        **SMALL, num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=64
    ),
    # Windowed layers from max_window_layers on: layer 0 global, layers 1-2 see 5 tokens.
    "qwen2-sliding-untied": lambda: transformers.Qwen2Config(
        **SMALL,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        use_sliding_window=True,
        sliding_window=5,
        max_window_layers=1,
        max_position_embeddings=64,
    ),
    "qwen3": lambda: transformers.Qwen3Config(
        **SMALL, num_key_value_heads=2, head_dim=24, tie_word_embeddings=True, max_position_embeddings=64
    ),
    "qwen3-bias-untied": lambda: transformers.Qwen3Config(
        **SMALL, num_key_value_heads=1, attention_bias=True, tie_word_embeddings=False, max_position_embeddings=64
    ),
    # Layers 0 and 2 slide over 4 tokens at rope base 10k; layer 1 is global at 1M with linear scaling.
    "gemma3": lambda: transformers.Gemma3TextConfig(
        **SMALL,
        **GEMMA,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
        },
    ),
    # initializer_range 0.2 (not 0.02) sharpens attention enough that the partial rotary shows in the logits.
    "pythia-parallel": lambda: transformers.GPTNeoXConfig(
        **SMALL, rotary_pct=0.25, use_parallel_residual=True, max_position_embeddings=64, initializer_range=0.2
    ),
    "neox-sequential": lambda: transformers.GPTNeoXConfig(
        **SMALL,
        rotary_pct=0.5,
        rotary_emb_base=500.0,
        use_parallel_residual=False,
        max_position_embeddings=64,
        initializer_range=0.2,
    ),
}


def _save(name: str, path) -> None:
    torch.manual_seed(0)
    cfg = CONFIGS[name]()
    model = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.float32)
    with torch.no_grad():  # random norms and biases so that every parameter matters
        for pname, p in model.named_parameters():
            if p.ndim == 1:
                is_norm = "norm" in pname or "ln" in pname
                p.copy_(torch.randn_like(p) * 0.2 + (0.0 if "gemma" in name else 1.0) * is_norm)
    model.save_pretrained(path, safe_serialization=True)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_and_resid_post_match_transformers(name: str, tmp_path) -> None:
    _save(name, tmp_path)
    model = Model.load(str(tmp_path))
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, size=(3, 12)).astype(np.int32)
    mask = np.ones_like(tokens)
    mask[1, :4] = 0  # left padding
    mask[2, :1] = 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert_matches(model, hf, tokens, mask, hidden_rtol=1e-4, hidden_atol=1e-5)


def test_unsupported_architecture_lists_supported(tmp_path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="supports model_type in"):
        Model.load(str(tmp_path))
