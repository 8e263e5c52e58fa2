"""Activation stores: sharded on disk, memory-mapped for reading, globally shuffled for training."""

from saelab.store.format import (
    NotAStoreError,
    StoreCorruptError,
    StoreError,
    StoreMismatchError,
    is_store,
    read_manifest,
)
from saelab.store.loader import ActivationLoader, Batch
from saelab.store.reader import ActivationStore, ShardedView, store_info
from saelab.store.verify import Problem, verify_store
from saelab.store.writer import StoreWriter

__all__ = [
    "ActivationLoader",
    "ActivationStore",
    "Batch",
    "NotAStoreError",
    "Problem",
    "ShardedView",
    "StoreCorruptError",
    "StoreError",
    "StoreMismatchError",
    "StoreWriter",
    "is_store",
    "read_manifest",
    "store_info",
    "verify_store",
]
