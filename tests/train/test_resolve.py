"""`train.resolve` reads its store's manifest through the store's own reader (version checked)."""

from __future__ import annotations

import json

import pytest

from saelab.store import NotAStoreError, StoreError, is_store
from saelab.train import TrainConfig, resolve


def test_train_resolve_reads_the_manifest_through_the_store(tmp_path) -> None:
    store = tmp_path / "s"
    store.mkdir()
    cfg = TrainConfig(data={"store": str(store)})
    assert not is_store(store)
    with pytest.raises(NotAStoreError, match=r"data.store: not an activation store: .* has no manifest.json"):
        resolve(cfg)
    (store / "manifest.json").write_text(json.dumps({"format_version": 99, "hooks": ["h"], "d_model": 4}))
    assert is_store(store)
    with pytest.raises(StoreError, match="format version 99"):
        resolve(cfg)
