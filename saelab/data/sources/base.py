"""What a corpus source hands to `open_corpus`, and the `+`-joined field lookup shared by row sources."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple


class Source(NamedTuple):
    """An opened source: a stable name, a content revision, and a reader of its documents in order."""

    name: str
    """Short stable name (no directories), hashed into the held-out split so moving a file keeps the split."""
    revision: str
    """What changes when the content does (interpreter version, file size); part of the fingerprint."""
    read: Callable[[], Iterator[str]]
    """Yields the documents' texts, in the same order on every call."""


class SourceKind(NamedTuple):
    """A registered source: its spec form (for errors) and how to open it from the text after `kind:`."""

    usage: str
    open: Callable[[str], Source]


def split_fields(field: str, usage: str) -> list[str]:
    """`question+answer` -> ["question", "answer"]; rejects empty names."""
    fields = field.split("+")
    if not all(fields):
        raise ValueError(f"empty field name in {field!r}; expected {usage} (question+answer)")
    return fields


def join_fields(row: Mapping[str, Any], fields: list[str], where: str) -> str:
    """The named fields of one row joined by newlines; `where` (file:line, row n) goes into errors."""
    parts = []
    for f in fields:
        if f not in row:
            have = ", ".join(map(repr, row)) or "none"
            raise ValueError(
                f"{where}: no field {f!r} (this row has {have}); name existing fields, "
                "several joined with '+', e.g. question+answer"
            )
        v = row[f]
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ValueError(f"{where}: field {f!r} is {type(v).__name__}, not text; pick a string field")
        parts.append(str(v))
    return "\n".join(parts)


def existing_file(path: str, usage: str) -> Path:
    """The file at `path` (with ~ expanded), or a ValueError saying which spec form wants it."""
    if not path:
        raise ValueError(f"missing PATH; expected {usage}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"{usage}: file {p} does not exist")
    return p
