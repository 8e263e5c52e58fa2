"""SmolLM2-135M from its GGUF: JAX logits, hidden states and tokenizer against transformers on torch."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.models import Model
from saelab.models.loading import resolve
from tests.peer_modules import needed

from .torch_reference import assert_matches

TEXTS = [
    "The quick brown fox jumps over the lazy dog. Sparse autoencoders find features in activations.",
    'def add(a, b):\n    """Return the sum of a and b."""\n    return a + b\n',
]


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.load("smollm2-135m")


@pytest.fixture(scope="module")
def torch_model():
    torch = needed("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve("smollm2-135m")
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return hf.eval(), tok


def test_model_info(model: Model) -> None:
    info = model.info()
    assert (info["n_layers"], info["d_model"], info["n_heads"], info["n_kv_heads"]) == (30, 576, 9, 3)
    assert info["vocab_size"] == 49152


def test_ioi_prompt_top_token_is_mary(model: Model) -> None:
    toks, _ = model.to_tokens("When Mary and John went to the store, John gave a drink to", prepend_bos=False)
    logits, _ = model.run_with_cache(toks, [])
    assert model.tokenizer.decode([int(jnp.argmax(logits[0, -1]))]) == " Mary"


def test_logits_and_hidden_states_match_transformers(model: Model, torch_model) -> None:
    hf, _ = torch_model
    toks, mask = model.to_tokens(TEXTS)
    assert_matches(model, hf, toks, mask, hidden_rtol=1e-3)


def test_bfloat16_forward_agrees_with_float32(model: Model) -> None:
    bf = Model(model.cfg, _cast(model.params, jnp.bfloat16), model.tokenizer, model.special)
    toks, _ = model.to_tokens(TEXTS[0])
    l32, _ = model.run_with_cache(toks, [])
    l16, _ = bf.run_with_cache(toks, [])
    agree = (np.asarray(l32).argmax(-1) == np.asarray(l16).argmax(-1)).mean()
    assert l16.dtype == jnp.float32 and agree >= 0.8


def test_tokenizer_matches_transformers_gguf_tokenizer(model: Model, torch_model) -> None:
    _, tok = torch_model
    text = (
        "Hello world! Sparse autoencoders, <|im_start|>user\nwhat's this?<|im_end|>\n"
        "    def f(x):  return x ** two  # comment\n\tTabs and   spaces. Ünïcödé — “quotes” 漢字"
    )
    assert model.tokenizer.encode(text, add_special_tokens=False).ids == tok.encode(text, add_special_tokens=False)
    for t in TEXTS:
        assert model.tokenizer.encode(t, add_special_tokens=False).ids == tok.encode(t, add_special_tokens=False)


def test_digits_are_split_one_by_one(model: Model) -> None:
    # llama.cpp's "smollm" pre-tokenizer (and the original SmolLM2 tokenizer.json) split every digit;
    # transformers' GGUF converter does not know that pre-tokenizer, so digits are tested here alone.
    ids = model.tokenizer.encode("from 1732 to 1799", add_special_tokens=False).ids
    pieces = [model.tokenizer.decode([i]) for i in ids]
    assert pieces[-4:] == ["1", "7", "9", "9"]


def _cast(tree, dtype):
    import jax

    return jax.tree.map(lambda x: x.astype(dtype), tree)
