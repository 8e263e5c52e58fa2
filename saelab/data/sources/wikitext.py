"""`wikitext-2`: the WikiText-2 validation split shipped with saelab, one document per article.

Installed with the package (`saelab/data/texts/`), so like `python-docs` it exists wherever saelab does; it
reads the file as `text:PATH` reads WikiText, under its own stable name.
"""

from __future__ import annotations

from saelab.data.sources.base import Source
from saelab.data.sources.text import read_text
from saelab.data.texts import WIKITEXT_2_VALID

USAGE = "wikitext-2"


def open_source(args: str) -> Source:
    if args:
        raise ValueError(f"wikitext-2 takes no arguments, got wikitext-2:{args}")
    path = WIKITEXT_2_VALID
    if not path.is_file():
        raise ValueError(f"the WikiText-2 file shipped with saelab is missing ({path}); reinstall saelab")
    return Source(name="wikitext-2", revision=f"bytes={path.stat().st_size}", read=lambda: read_text(path))
