"""Fixtures: the SmolLM2 tokenizer (tasks are built from real names), tiny random models saved to disk, and
a random task for the patching methods. The persistent compilation cache is off in tests (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from saelab.circuits.tasks import TaskData
from saelab.models import Model
from tests.peer_modules import needed


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Model.load("smollm2-135m").tokenizer


@pytest.fixture(scope="session")
def tiny():
    """`tiny(path, family, tokenizer=None, **config)` saves a small random model and returns its path."""
    return save_tiny


def save_tiny(path: Path, family: str, tokenizer: Tokenizer | None = None, **kw) -> Path:
    """A small random Llama or GPT-2 in Hugging Face format (plus tokenizer.json when given)."""
    torch = needed("torch")
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


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny) -> Model:
    """A tiny random Llama, initialised wide enough that heads matter."""
    return Model.load(str(tiny(tmp_path_factory.mktemp("tiny"), "llama", initializer_range=0.2)))


@pytest.fixture(scope="module")
def task() -> TaskData:
    """Random prompts; negatives differ at two positions; pair 2 is left-padded by two tokens."""
    rng = np.random.default_rng(0)
    n, s = 6, 10
    pos = rng.integers(1, 97, (n, s)).astype(np.int32)
    neg = pos.copy()
    neg[:, 3:5] = rng.integers(1, 97, (n, 2))
    mask = np.ones((n, s), np.int32)
    mask[2, :2] = 0
    pos[2, :2] = neg[2, :2] = 0
    answer, wrong = rng.integers(1, 97, (2, n)).astype(np.int32)
    targets = {"answer": answer, "wrong": wrong}
    return TaskData("random", pos, neg, mask, "logit_diff", targets, 0, (("", ""),) * n)
