"""Packing: window layout, document and position labels, decode round trip, resuming, within-document mode."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer

from saelab.data import Document, PackedBatch, pack_batches

BOS, EOS = 1, 0  # <|im_start|>, <|endoftext|> in the conftest tokenizer
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Return the number of items in the container. " * 5,
    "Café au lait, naïve façade: 日本語のテキスト 🙂🙂 and emoji 🦊🦊🦊 mixed with text.",
    "x",
    "A sparse autoencoder reconstructs activations from a few active latents. " * 3,
    "🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂",
    "def read(path): return open(path).read()",
]
DOCS = [Document(10 + i, t) for i, t in enumerate(TEXTS)]  # indices unlike row numbers, to catch mix-ups


def _pack(tokenizer: Tokenizer, **kw) -> list[PackedBatch]:
    kw = {"bos_id": BOS, "eos_id": EOS, "context": 9, "batch": 4} | kw
    return list(pack_batches(DOCS, tokenizer, **kw))


def _rows(batches: list[PackedBatch]) -> PackedBatch:
    return PackedBatch(*(np.concatenate(parts) for parts in zip(*batches, strict=True)))


def test_special_ids_match_the_tokenizer(tokenizer: Tokenizer) -> None:
    assert tokenizer.token_to_id("<|endoftext|>") == EOS and tokenizer.token_to_id("<|im_start|>") == BOS


@pytest.mark.parametrize("within_document", [False, True])
def test_window_layout(tokenizer: Tokenizer, within_document: bool) -> None:
    batches = _pack(tokenizer, within_document=within_document)
    assert all(len(b.tokens) == 4 for b in batches[:-1]) and 1 <= len(batches[-1].tokens) <= 4
    rows = _rows(batches)
    assert rows.tokens.dtype == np.int32 and rows.doc.dtype == np.int64 and rows.pos.dtype == np.int32
    assert rows.tokens.shape == rows.doc.shape == rows.pos.shape == (len(rows.tokens), 9)
    assert (rows.tokens[:, 0] == BOS).all() and (rows.tokens[:, 1:] != BOS).all()
    assert (rows.pos == np.arange(9)).all()
    assert (rows.doc[:, 0] == rows.doc[:, 1]).all()


def test_cross_document_stream_is_exact_for_ascii(tokenizer: Tokenizer) -> None:
    """Without split characters the windows are exactly the concatenated stream, cut every 8 tokens."""
    docs = [d for d in DOCS if d.text.isascii()]
    stream, owner = [], []
    for d in docs:
        ids = [*tokenizer.encode(d.text, add_special_tokens=False).ids, EOS]
        stream += ids
        owner += [d.index] * len(ids)
    rows = _rows(list(pack_batches(docs, tokenizer, bos_id=BOS, eos_id=EOS, context=9, batch=4)))
    n = len(stream) // 8
    assert len(rows.tokens) == n
    assert rows.tokens[:, 1:].ravel().tolist() == stream[: n * 8]
    assert rows.doc[:, 1:].ravel().tolist() == owner[: n * 8]


def test_windows_decode_to_source_text(tokenizer: Tokenizer) -> None:
    """Every window, and every document's run inside it, decodes to a substring of the source."""
    rows = _rows(_pack(tokenizer))
    joined = "<|endoftext|>".join(TEXTS)
    by_index = {d.index: d.text for d in DOCS}
    for toks, doc in zip(rows.tokens, rows.doc, strict=True):
        text = tokenizer.decode(toks[1:].tolist(), skip_special_tokens=False)
        assert "\ufffd" not in text and text in joined
        for i in np.unique(doc[1:]):
            part = [t for t, d in zip(toks[1:].tolist(), doc[1:], strict=True) if d == i and t != EOS]
            assert tokenizer.decode(part) in by_index[int(i)]
    assert {int(i) for i in np.unique(rows.doc)} <= set(by_index)


def test_naive_cuts_would_split_characters(tokenizer: Tokenizer) -> None:
    """The corpus exercises the character-boundary rule: fixed cuts every 8 tokens would break characters."""
    stream = [t for d in DOCS for t in [*tokenizer.encode(d.text, add_special_tokens=False).ids, EOS]]
    naive = [tokenizer.decode(stream[s : s + 8]) for s in range(0, len(stream) - 7, 8)]
    assert any("\ufffd" in text for text in naive)
    assert len(_rows(_pack(tokenizer)).tokens) < len(naive)


@pytest.mark.parametrize("within_document", [False, True])
@pytest.mark.parametrize("skip", [1, 3, 6])
def test_skip_windows_equals_slicing(tokenizer: Tokenizer, within_document: bool, skip: int) -> None:
    full = _rows(_pack(tokenizer, within_document=within_document))
    rest = _pack(tokenizer, within_document=within_document, skip_windows=skip, batch=3)
    assert len(rest[0].tokens) == min(3, len(full.tokens) - skip)
    for a, b in zip(_rows(rest), (x[skip:] for x in full), strict=True):
        np.testing.assert_array_equal(a, b)


def test_skipping_past_the_end_gives_nothing(tokenizer: Tokenizer) -> None:
    assert _pack(tokenizer, skip_windows=10_000) == []


def test_within_document_windows_stay_inside_one_document(tokenizer: Tokenizer) -> None:
    rows = _rows(_pack(tokenizer, within_document=True))
    by_index = {d.index: d.text for d in DOCS}
    assert (rows.doc == rows.doc[:, :1]).all()
    assert EOS not in rows.tokens
    for toks, doc in zip(rows.tokens, rows.doc, strict=True):
        assert tokenizer.decode(toks[1:].tolist()) in by_index[int(doc[0])]
    short = [d.index for d in DOCS if len(tokenizer.encode(d.text, add_special_tokens=False).ids) < 8]
    assert short and not set(short) & set(rows.doc.ravel().tolist())


def test_no_eos_concatenates_documents(tokenizer: Tokenizer) -> None:
    rows = _rows(_pack(tokenizer, eos_id=None))
    joined = "".join(TEXTS)
    assert EOS not in rows.tokens
    assert all(tokenizer.decode(t[1:].tolist()) in joined for t in rows.tokens)


@pytest.mark.parametrize("kwargs", [{"context": 1}, {"batch": 0}, {"skip_windows": -1}, {"bos_id": 10**6}])
def test_bad_arguments_are_rejected(tokenizer: Tokenizer, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        pack_batches(DOCS, tokenizer, **({"bos_id": BOS} | kwargs))  # raised at the call, before iterating
