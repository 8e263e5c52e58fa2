"""`jsonl:PATH:FIELD`: one JSON object per line; FIELD may join several fields with `+` (newline-joined)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from saelab.data.sources.base import Source, existing_file, join_fields, split_fields

USAGE = "jsonl:PATH:FIELD"
_ONE_OBJECT = 'every line must be one JSON object such as {"text": "..."}'


def open_source(args: str) -> Source:
    path, sep, field = args.rpartition(":")
    if not sep:
        raise ValueError(f"jsonl:{args} names no field; expected {USAGE}, e.g. jsonl:data/test.jsonl:question+answer")
    fields = split_fields(field, USAGE)
    p = existing_file(path, USAGE)
    return Source(
        name=f"jsonl:{p.name}:{field}", revision=f"bytes={p.stat().st_size}", read=lambda: read_jsonl(p, fields)
    )


def read_jsonl(path: Path, fields: list[str]) -> Iterator[str]:
    """The joined `fields` of every line; any bad line is a ValueError naming file and line."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            where = f"{path}:{n}"
            if not line.strip():
                raise ValueError(
                    f"{where}: empty line; every line of a JSONL file must hold one JSON object (delete the blank line)"
                )
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg}, column {e.colno}); {_ONE_OBJECT}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: a JSON {type(row).__name__}, not an object; {_ONE_OBJECT}")
            yield join_fields(row, fields, where)
