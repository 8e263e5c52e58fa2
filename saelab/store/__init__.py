"""Activation stores: sharded on disk, memory-mapped for reading, globally shuffled for training."""

from saelab.store.format import StoreCorruptError, StoreError, StoreMismatchError
from saelab.store.loader import ActivationLoader, Batch
from saelab.store.reader import ActivationStore, Problem, store_info, verify_store
from saelab.store.writer import StoreWriter

__all__ = [
    "ActivationLoader", "ActivationStore", "Batch", "Problem", "StoreCorruptError", "StoreError",
    "StoreMismatchError", "StoreWriter", "store_info", "verify_store",
]
