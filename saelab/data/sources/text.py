"""`text:PATH`: a plain-text file, split into WikiText articles or blank-line-separated blocks.

A file whose first non-blank line is a WikiText title (` = Title = `) is read as WikiText: each title starts
an article and ` = = Section = = ` headings stay inside it. Lines are stripped of WikiText's padding spaces
and blank lines dropped, so an article is its title line followed by its lines joined by newlines.
Any other file gives one document per block of non-blank lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from saelab.data.sources.base import Source, existing_file

USAGE = "text:PATH"
_TITLE = re.compile(r"= [^=](.*[^=])? =")
"""A stripped top-level WikiText heading; `= = Section = =` does not match."""


def open_source(args: str) -> Source:
    path = existing_file(args, USAGE)
    return Source(name=f"text:{path.name}", revision=f"bytes={path.stat().st_size}", read=lambda: read_text(path))


def read_text(path: Path) -> Iterator[str]:
    """Documents of `path`: WikiText articles when it looks like WikiText, else blank-line blocks."""
    return _articles(path) if is_wikitext(path) else _blocks(path)


def is_wikitext(path: Path) -> bool:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return _TITLE.fullmatch(line.strip()) is not None
    return False


def _articles(path: Path) -> Iterator[str]:
    lines: list[str] = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if _TITLE.fullmatch(line) and lines:
                yield "\n".join(lines)
                lines = []
            if line:
                lines.append(line)
    if lines:
        yield "\n".join(lines)


def _blocks(path: Path) -> Iterator[str]:
    lines: list[str] = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip()
            if line:
                lines.append(line)
            elif lines:
                yield "\n".join(lines)
                lines = []
    if lines:
        yield "\n".join(lines)
