"""Tokenise documents and pack them into fixed windows `[BOS, t1, ..., t_{context-1}]` for the model.

Default packing concatenates documents into one token stream (each followed by EOS when an id is given)
and cuts it into windows regardless of document boundaries, as SAE training data is usually made (e.g.
SAELens's token packing); the BOS at the start of every window keeps the model's first position sane.
`within_document=True` instead cuts every document on its own and drops its tail shorter than a window
(no padding: every window is full, so batches need no mask); documents shorter than a window give nothing.

A cut never falls inside a character: byte-level tokenizers split a rare multi-byte character into several
tokens, and a window holding only some of them would decode to U+FFFD. Where a cut would land there, the
window moves forward to the next character boundary, dropping those (few) tokens.

Packing is deterministic, so a resumed harvest passes `skip_windows` = windows already done and gets exactly
the windows an uninterrupted run would have produced next.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
from tokenizers import Tokenizer

from saelab.data.corpus import Document

ENCODE_DOCS = 512
"""Documents per `encode_batch` call (the tokenizer parallelises within a call)."""
ENCODE_CHARS = 1 << 20
"""Characters per `encode_batch` call, bounding memory when documents are long."""


class PackedBatch(NamedTuple):
    """Windows of one batch; row r is one window."""

    tokens: np.ndarray
    """(batch, context) int32 token ids; column 0 is BOS."""
    doc: np.ndarray
    """(batch, context) int64 document index of each token; BOS takes that of the token after it."""
    pos: np.ndarray
    """(batch, context) int32 position within the window, 0 = BOS."""


def pack_batches(
    corpus: Iterable[Document],
    tokenizer: Tokenizer,
    *,
    bos_id: int,
    eos_id: int | None = None,
    context: int = 128,
    batch: int = 16,
    within_document: bool = False,
    skip_windows: int = 0,
) -> Iterator[PackedBatch]:
    """Windows of `context` tokens, `batch` per batch (the last may be short), from window `skip_windows`."""
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    for what, tid in (("bos_id", bos_id), ("eos_id", eos_id)):
        if tid is not None and not 0 <= tid < vocab:
            raise ValueError(f"{what}={tid} is outside the tokenizer's vocabulary of {vocab}")
    if context < 2 or batch < 1 or skip_windows < 0:
        raise ValueError(f"need context >= 2, batch >= 1, skip_windows >= 0; got {context}, {batch}, {skip_windows}")
    pieces = _encode(corpus, tokenizer, None if within_document else eos_id)
    windows = (_windows_within if within_document else _windows_across)(pieces, context - 1)
    return _batches(windows, bos_id, batch, skip_windows)


def pack_for_model(
    corpus: Iterable[Document], model: Any, *, context: int, batch: int, **options: Any
) -> Iterator[PackedBatch]:
    """`pack_batches` with a model's tokenizer, BOS and EOS (`options`: within_document, skip_windows)."""
    return pack_batches(
        corpus, model.tokenizer, bos_id=model.bos_id, eos_id=model.eos_id, context=context, batch=batch, **options
    )


def _batches(
    windows: Iterator[tuple[np.ndarray, np.ndarray]], bos_id: int, batch: int, skip_windows: int
) -> Iterator[PackedBatch]:
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for n, w in enumerate(windows):
        if n < skip_windows:
            continue
        rows.append(w)
        if len(rows) == batch:
            yield _stack(rows, bos_id)
            rows = []
    if rows:
        yield _stack(rows, bos_id)


class _Piece(NamedTuple):
    """One tokenised document: ids, its index repeated, and where a cut may fall (see `_char_boundaries`)."""

    ids: np.ndarray  # (n,) int32
    doc: np.ndarray  # (n,) int64
    cut_ok: np.ndarray  # (n,) bool: a window may start at this token


def _encode(docs: Iterable[Document], tokenizer: Tokenizer, eos_id: int | None) -> Iterator[list[_Piece]]:
    """Tokenised documents, a list per `encode_batch` call; documents without tokens are left out."""
    chunk: list[Document] = []
    chars = 0
    for d in docs:
        chunk.append(d)
        chars += len(d.text)
        if len(chunk) >= ENCODE_DOCS or chars >= ENCODE_CHARS:
            yield _encode_chunk(chunk, tokenizer, eos_id)
            chunk, chars = [], 0
    if chunk:
        yield _encode_chunk(chunk, tokenizer, eos_id)


def _encode_chunk(docs: list[Document], tokenizer: Tokenizer, eos_id: int | None) -> list[_Piece]:
    encs = tokenizer.encode_batch([d.text for d in docs], add_special_tokens=False)
    pieces = []
    for d, e in zip(docs, encs, strict=True):
        if not e.ids:
            continue
        ids, ok = e.ids, _char_boundaries(e.offsets)
        if eos_id is not None:
            ids, ok = [*ids, eos_id], np.append(ok, True)
        pieces.append(_Piece(np.asarray(ids, np.int32), np.full(len(ids), d.index, np.int64), ok))
    return pieces


def _char_boundaries(offsets: list[tuple[int, int]]) -> np.ndarray:
    """True where token i starts a new character: tokens i-1 and i share no character of the text."""
    off = np.asarray(offsets, np.int64).reshape(-1, 2)  # (n, 2) character spans
    ok = np.ones(len(off), bool)
    ok[1:] = off[:-1, 1] <= off[1:, 0]
    return ok


def _windows_across(chunks: Iterator[list[_Piece]], width: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Windows of `width` tokens cut from the concatenated stream; the final short tail is dropped."""
    rest = _Piece(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, bool))
    for pieces in chunks:
        buf = _Piece(*(np.concatenate(parts) for parts in zip(rest, *pieces, strict=True)))
        starts, resume = _cuts(buf.cut_ok, width)
        for s in starts:
            yield buf.ids[s : s + width], buf.doc[s : s + width]
        rest = _Piece(*(a[resume:] for a in buf))


def _windows_within(chunks: Iterator[list[_Piece]], width: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Windows of `width` tokens inside each document; each document's short tail is dropped."""
    for pieces in chunks:
        for p in pieces:
            for s in _cuts(p.cut_ok, width)[0]:
                yield p.ids[s : s + width], p.doc[s : s + width]


def _cuts(cut_ok: np.ndarray, width: int) -> tuple[list[int], int]:
    """Window starts s (cut_ok at s and at s + width) and the index where the uncut rest begins.

    The buffer always ends at a document boundary, so a window may end exactly at its end.
    """
    n = len(cut_ok)
    starts = []
    s = 0
    while s + width <= n:
        e = s + width
        if cut_ok[s] and (e == n or cut_ok[e]):
            starts.append(s)
            s = e
        else:
            s += 1
    return starts, s


def _stack(rows: list[tuple[np.ndarray, np.ndarray]], bos_id: int) -> PackedBatch:
    ids = np.stack([r[0] for r in rows])  # (batch, context - 1)
    doc = np.stack([r[1] for r in rows])
    tokens = np.concatenate([np.full((len(rows), 1), bos_id, np.int32), ids], axis=1)
    docs = np.concatenate([doc[:, :1], doc], axis=1)
    pos = np.broadcast_to(np.arange(tokens.shape[1], dtype=np.int32), tokens.shape).copy()
    return PackedBatch(tokens, docs, pos)
