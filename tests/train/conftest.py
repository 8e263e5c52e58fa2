"""A small real activation store (SmolLM2-135M, layer 3 residual stream, Python docstrings) for trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from saelab.harvest import HarvestConfig
from saelab.harvest import run as harvest

HOOK = "blocks.3.hook_resid_post"


@pytest.fixture(scope="session")
def real_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store") / "smollm2-l3"
    harvest(
        HarvestConfig(hooks=[HOOK], tokens=16_384, context=128, batch=16, dtype="float32", shard_tokens=4096, out=out),
        progress=False,
    )
    return out
