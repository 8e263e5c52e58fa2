"""The select-corpus stage writes every source's texts as chat user turns, each source capped at `limit`."""

from __future__ import annotations

import json

import pytest

from saelab.select.config import ChatCorpusConfig
from saelab.select.corpus import write_chat_corpus


def test_chat_corpus_wraps_and_caps(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["set a timer", "play music", "hi"]))
    b.write_text(json.dumps({"question": "What is 2 + 2?"}) + "\n")
    cfg = ChatCorpusConfig(sources=[f"jsonl:{a}:text", f"jsonl:{b}:question"], limit=2, out=tmp_path / "o.jsonl")
    rows = [json.loads(x) for x in write_chat_corpus(cfg).read_text().splitlines()]
    assert [r["text"] for r in rows] == [
        "<|im_start|>user\nset a timer",
        "<|im_start|>user\nplay music",
        "<|im_start|>user\nWhat is 2 + 2?",
    ]
    with pytest.raises(ValueError, match="overwrite"):
        write_chat_corpus(cfg)
