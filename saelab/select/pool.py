"""JSONL pools read as raw lines: the text to score, and the exact bytes to copy into a selection.

A selection must be the pool's records byte for byte (no re-serialisation: key order, spacing and unicode
escapes stay as the user wrote them), so a record is kept as the bytes of its line. Every problem names the
file and the 1-based line, so a user can fix a 100k-line pool without bisecting it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple


class Record(NamedTuple):
    """One pool line: its 1-based line number, its bytes (line ending included) and the text to score."""

    line: int
    raw: bytes
    text: str


def read_records(path: str | Path, text_field: str) -> Iterator[Record]:
    """Stream the records of a JSONL file; ValueError naming the line for an empty line, bad JSON, a record
    that is not an object, or a missing / non-string / empty text field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pool file {path} does not exist")
    with path.open("rb") as f:
        for i, line in enumerate(f, start=1):
            yield Record(i, line, _text(line.rstrip(b"\r\n"), text_field, path, i))


def read_texts(path: str | Path, text_field: str) -> list[str]:
    """All texts of a (small) JSONL file, e.g. the target examples."""
    texts = [r.text for r in read_records(path, text_field)]
    if not texts:
        raise ValueError(f"{path} holds no records")
    return texts


def batched(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    """Consecutive lists of `size` records (the last one shorter): the unit of streaming work."""
    chunk: list[Record] = []
    for r in records:
        chunk.append(r)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _text(raw: bytes, field: str, path: Path, line: int) -> str:
    where = f"{path}:{line}"
    if not raw.strip():
        raise ValueError(f"{where}: empty line (a JSONL pool needs one JSON object per line)")
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if field not in obj:
        raise ValueError(f"{where}: missing text field {field!r} (fields: {sorted(obj)[:10]})")
    text = obj[field]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"{where}: text field {field!r} is {'empty' if isinstance(text, str) else type(text).__name__}"
        )
    return text
