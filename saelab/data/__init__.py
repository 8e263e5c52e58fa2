"""Text corpora by spec string, a deterministic held-out split, and packing into fixed token windows."""

from saelab.data.corpus import SPEC_FORMS, Corpus, Document, Split, is_heldout, open_corpus
from saelab.data.packing import PackedBatch, pack_batches, pack_for_model
from saelab.data.sources import SOURCES

__all__ = [
    "SOURCES",
    "SPEC_FORMS",
    "Corpus",
    "Document",
    "PackedBatch",
    "Split",
    "is_heldout",
    "open_corpus",
    "pack_batches",
    "pack_for_model",
]
