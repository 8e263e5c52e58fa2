"""Corpora: a source looked up by spec string, its documents in a fixed order, and a held-out split.

    corpus = open_corpus("jsonl:problems.jsonl:question+answer", split="train")
    for doc in corpus:          # Document(index, text), index counted over the whole source
        ...

The split is a pure function of (source name, document index): a document is held out when a blake2b hash
of the two falls below `heldout_fraction`, so train and heldout are disjoint, cover the source, and agree on
every machine and run (Python's `hash()` is salted per process and would not).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Literal, NamedTuple, get_args

from saelab.data.sources import SOURCES, Source

Split = Literal["all", "train", "heldout"]


class Document(NamedTuple):
    """One document and its position in the source's full order (the same whatever the split)."""

    index: int
    text: str


def open_corpus(spec: str, split: Split = "all", heldout_fraction: float = 0.05) -> Corpus:
    """The corpus named by `spec` (see `SPEC_FORMS`), restricted to `split`. Files are checked now."""
    if split not in get_args(Split):
        raise ValueError(f"split {split!r} is not one of {get_args(Split)}")
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    kind, _, args = spec.partition(":")
    if kind not in SOURCES:
        raise ValueError(f"unknown corpus spec {spec!r}; valid forms: {', '.join(SPEC_FORMS)}")
    return Corpus(spec, SOURCES[kind].open(args), split, heldout_fraction)


SPEC_FORMS = tuple(k.usage for k in SOURCES.values())


class Corpus:
    """Documents of one source and split, re-read from the source on every iteration."""

    def __init__(self, spec: str, source: Source, split: Split, heldout_fraction: float) -> None:
        self.spec = spec
        self.source = source
        self.split = split
        self.heldout_fraction = heldout_fraction

    @property
    def name(self) -> str:
        return self.source.name

    def __iter__(self) -> Iterator[Document]:
        """Documents of the split in source order; an empty split of a non-empty source is a ValueError."""
        kept = total = 0
        for i, text in enumerate(self.source.read()):
            total += 1
            if self.split == "all" or self._heldout(i) == (self.split == "heldout"):
                kept += 1
                yield Document(i, text)
        if total and not kept:
            raise ValueError(
                f"split {self.split!r} of {self.spec} is empty: none of its {total} documents "
                f"falls in it at heldout_fraction={self.heldout_fraction}; pick another"
            )

    def fingerprint(self) -> str:
        """16 hex digits of spec, split, fraction and source revision; differs for a store of other text."""
        key = f"{self.spec}\n{self.split}\n{self.heldout_fraction!r}\n{self.source.revision}"
        return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()

    def lookup(self, indices: Iterable[int]) -> dict[int, str]:
        """Texts of the documents with these indices (any split), in one pass over the source."""
        want = set(indices)
        found: dict[int, str] = {}
        for i, text in enumerate(self.source.read()):
            if len(found) == len(want):
                break
            if i in want:
                found[i] = text
        return found

    def _heldout(self, index: int) -> bool:
        return is_heldout(self.name, index, self.heldout_fraction)

    def __repr__(self) -> str:
        return f"Corpus({self.spec!r}, split={self.split!r}, heldout_fraction={self.heldout_fraction})"


def is_heldout(name: str, index: int, fraction: float) -> bool:
    """Whether document `index` of source `name` is held out; nested: a larger fraction keeps these too."""
    h = hashlib.blake2b(f"{name}\n{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") < fraction * 2**64
