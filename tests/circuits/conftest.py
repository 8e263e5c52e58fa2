"""Fixtures: the SmolLM2 tokenizer (tasks are built from real names) and tiny random models saved to disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from saelab.models import Model


@pytest.fixture(scope="session", autouse=True)
def _jax_cache_in_tmp(tmp_path_factory):
    """`circuits` runs turn on the persistent compilation cache: keep the tests' programs out of ~/.cache."""
    old = os.environ.get("SAELAB_JAX_CACHE")
    os.environ["SAELAB_JAX_CACHE"] = str(tmp_path_factory.mktemp("jax-cache"))
    yield
    if old is None:
        os.environ.pop("SAELAB_JAX_CACHE")
    else:
        os.environ["SAELAB_JAX_CACHE"] = old


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Model.load("smollm2-135m").tokenizer


@pytest.fixture(scope="session")
def tiny():
    """`tiny(path, family, tokenizer=None, **config)` saves a small random model and returns its path."""
    return save_tiny


def save_tiny(path: Path, family: str, tokenizer: Tokenizer | None = None, **kw) -> Path:
    """A small random Llama or GPT-2 in Hugging Face format (plus tokenizer.json when given)."""
    torch = pytest.importorskip("torch", reason="building a random reference model needs torch")
    import transformers

    torch.manual_seed(0)
    vocab = tokenizer.get_vocab_size() if tokenizer is not None else 97
    if family == "llama":
        cfg = transformers.LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=vocab,
            max_position_embeddings=128,
            **kw,
        )
    else:
        cfg = transformers.GPT2Config(n_embd=48, n_layer=12, n_head=12, vocab_size=vocab, n_positions=128, **kw)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(path, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save(str(path / "tokenizer.json"))
    return path
