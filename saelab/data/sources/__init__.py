"""Corpus sources by spec prefix. Adding a source is adding a module with `open_source` and a line here."""

from saelab.data.sources import hf, jsonl, python_docs, text, wikitext
from saelab.data.sources.base import Source, SourceKind

SOURCES: dict[str, SourceKind] = {
    "python-docs": SourceKind(python_docs.USAGE, python_docs.open_source),
    "wikitext-2": SourceKind(wikitext.USAGE, wikitext.open_source),
    "text": SourceKind(text.USAGE, text.open_source),
    "jsonl": SourceKind(jsonl.USAGE, jsonl.open_source),
    "hf": SourceKind(hf.USAGE, hf.open_source),
}

__all__ = ["SOURCES", "Source", "SourceKind"]
