"""Fixtures: a tiny random Llama with a word-level tokenizer that knows the ChatML pieces (shapes and plumbing
only, never claims about features), a random TopK SAE for it in SAELens format, and a small pool / target pair."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from saelab.models import Model, ModelConfig
from saelab.models.llama import weights_from_hf
from saelab.sae import TopKConfig, init_params, save_saelens

WORDS = "set a timer for five minutes what is the weather today play some music please book flight to paris"
WORDS = WORDS.split()
HOOK = "blocks.1.hook_resid_post"
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>", "user"]


@pytest.fixture(scope="session")
def tiny_model() -> Model:
    vocab = {"<unk>": 0, "<s>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    vocab |= {t: len(vocab) + i for i, t in enumerate(CHAT_TOKENS)}  # ChatML pieces for template = "chat"
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    cfg = ModelConfig(
        family="llama",
        n_layers=2,
        d_model=16,
        n_heads=2,
        n_kv_heads=1,
        d_head=8,
        d_mlp=32,
        vocab_size=len(vocab),
        max_positions=128,
        norm_eps=1e-5,
    )
    rng = np.random.default_rng(0)
    shapes = {
        "embed_tokens": (cfg.vocab_size, 16),
        "q_proj": (16, 16),
        "k_proj": (8, 16),
        "v_proj": (8, 16),
        "o_proj": (16, 16),
        "gate_proj": (32, 16),
        "up_proj": (32, 16),
        "down_proj": (16, 32),
    }

    def get(name: str) -> np.ndarray:
        if name.endswith("norm.weight"):
            return np.ones(16, np.float32)
        return rng.normal(0, 0.3, shapes[name.split(".")[-2]]).astype(np.float32)

    return Model(cfg, weights_from_hf(get, cfg, jnp.float32), tok, {"bos": 1}, source="tiny", weights_hash="tiny-0")


@pytest.fixture(scope="session")
def tiny_sae(tmp_path_factory) -> Path:
    cfg = TopKConfig(d_in=16, d_sae=64, k=4)
    p = init_params(jax.random.PRNGKey(1), cfg)
    p = p._replace(W_enc=p.W_dec.T * 10)
    path = tmp_path_factory.mktemp("sae") / "sae"
    return save_saelens(path, p, cfg, {"hook_name": HOOK, "model_name": "tiny"})


@pytest.fixture
def pool_and_target(tmp_path) -> tuple[Path, Path]:
    """A pool with odd but valid JSON (spacing, key order, unicode escapes, CRLF, no final newline)."""
    lines = [
        '{"text": "set a timer for five minutes", "label": "timer"}\n',
        '{ "label":"weather" ,"text":"what is the weather today"}\n',
        '{"text": "play some music please", "label": "music", "extra": [1, 2.50, null]}\r\n',
        '{"text": "book a flight to paris \\u2708", "label": "travel"}\n',
        '{"text": "set a timer please", "label": "timer"}\n',
        '{"text": "what is the weather", "label": "weather"}\n',
        '{"text": "play music", "label": "music"}\n',
        '{"text": "book flight", "label": "travel"}',
    ]
    pool = tmp_path / "pool.jsonl"
    pool.write_bytes("".join(lines).encode())
    target = tmp_path / "target.jsonl"
    target.write_text("\n".join(json.dumps({"text": t}) for t in ["set a timer", "timer for five minutes"]) + "\n")
    return pool, target
