"""Judges: OpenAIJudge against a local fake OpenAI-compatible server (request format, key, errors, the
environment variables), and LocalJudge's batching against saelab's own generation one prompt at a time."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from saelab.evals.autointerp.judge import LocalJudge, OpenAIJudge, make_judge, render_chatml
from saelab.models import Model, ModelConfig
from saelab.models.generate import generate_text
from saelab.models.llama import weights_from_hf

from .fakes import FakeOpenAI

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Example 0: a cat"}]


def test_openai_judge_posts_chat_completions() -> None:
    with FakeOpenAI() as server:
        judge = OpenAIJudge(server.url + "/", "judge-model", api_key="sk-test")
        replies = judge.complete([CHAT, [{"role": "user", "content": "second"}]], max_tokens=13)
    assert replies == ["echo: Example", "echo: second"]
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    assert first["body"] == {"model": "judge-model", "messages": CHAT, "max_tokens": 13, "temperature": 0.0}
    assert judge.name == "openai:judge-model"


def test_openai_judge_from_env_and_errors(monkeypatch) -> None:
    for var in ("SAELAB_JUDGE_BASE_URL", "SAELAB_JUDGE_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="SAELAB_JUDGE_BASE_URL"):
        make_judge("openai")
    with FakeOpenAI() as server:
        monkeypatch.setenv("SAELAB_JUDGE_BASE_URL", server.url)
        monkeypatch.setenv("SAELAB_JUDGE_MODEL", "from-env")
        judge = make_judge("openai", model="override")
        assert judge.complete([CHAT], 100) == ["echo: Example 0: a cat"]
    assert server.requests[0]["body"]["model"] == "override" and server.requests[0]["auth"] is None
    with FakeOpenAI(fail=True) as server, pytest.raises(ValueError, match="HTTP 500"):
        OpenAIJudge(server.url, "m").complete([CHAT], 8)
    with pytest.raises(ValueError, match="unreachable"):
        OpenAIJudge("http://127.0.0.1:9", "m", timeout=5).complete([CHAT], 8)  # port 9 (discard): refused
    with pytest.raises(ValueError, match="http:// or https://"):
        OpenAIJudge("localhost:8000", "m")


def _tiny_chat_model() -> Model:
    """A random 2-layer Llama with a word-level tokenizer that knows the ChatML pieces (plumbing only)."""
    words = "<unk> <s> <|im_start|> <|im_end|> system user assistant be brief example a cat dog 0 1 :".split()
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    cfg = ModelConfig(family="llama", n_layers=2, d_model=16, n_heads=2, n_kv_heads=1, d_head=8, d_mlp=32,
                      vocab_size=len(vocab), max_positions=512, norm_eps=1e-5)  # fmt: skip
    rng = np.random.default_rng(0)
    shapes = {"embed_tokens": (len(vocab), 16), "q_proj": (16, 16), "k_proj": (8, 16), "v_proj": (8, 16),
              "o_proj": (16, 16), "gate_proj": (32, 16), "up_proj": (32, 16), "down_proj": (16, 32)}  # fmt: skip

    def get(name: str) -> np.ndarray:
        if name.endswith("norm.weight"):
            return np.ones(16, np.float32)
        return rng.normal(0, 0.5, shapes[name.split(".")[-2]]).astype(np.float32)

    return Model(cfg, weights_from_hf(get, cfg, jnp.float32), tok, {"bos": 1}, source="tiny", weights_hash="t")


def test_local_judge_batches_like_single_generation() -> None:
    """Replies of chats of different lengths, batched 2 at a time (sorted by length, padded to 128-token
    buckets and full batches), equal saelab's generation of each rendered chat alone."""
    model = _tiny_chat_model()
    judge = LocalJudge(model, batch=2)
    chats = [
        [
            {"role": "user", "content": "a cat " * n},
            {"role": "assistant", "content": "dog"},
            {"role": "user", "content": "0"},
        ]
        for n in (1, 40, 3)
    ]
    assert judge.chatml and judge.render(chats[0]) == render_chatml(chats[0])
    got = judge.complete(chats, max_tokens=5)
    want = [generate_text(model, judge.render(c), 5, prepend_bos=False) for c in chats]
    assert got == want and all(got)
