"""Fixtures: the synthetic store for exact comparisons; a small real SmolLM2 store, a random SAE over it
and the report built from them for the site, CLI and browser tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .inspect_helpers import REAL_HOOK, write_sae, write_store


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("store") / "s")


@pytest.fixture(scope="session")
def real(tmp_path_factory) -> tuple[Path, Path]:
    """(store, SAE): 2,048 python-docs tokens of SmolLM2 layer 3, and a random TopK SAE over them."""
    from saelab.harvest import HarvestConfig, run
    from saelab.models import Model

    root = tmp_path_factory.mktemp("real")
    model = Model.load("smollm2-135m")
    store = run(
        HarvestConfig(hooks=[REAL_HOOK], tokens=2048, batch=8, context=64, out=root / "store"),
        model=model,
        progress=False,
    )
    meta = {"model_name": "smollm2-135m", "hook_name": REAL_HOOK, "weights_hash": model.weights_hash}
    sae = write_sae(root / "sae", d_in=model.cfg.d_model, d_sae=200, k=8, meta=meta)
    return store, sae


@pytest.fixture(scope="session")
def report(real, tmp_path_factory) -> Path:
    """The site of the real store's SAE."""
    from saelab.inspect import InspectConfig, run

    store, sae = real
    out = tmp_path_factory.mktemp("report") / "r"
    run(
        InspectConfig(sae=sae, store=store, out=out, batch_windows=8, top_k=6, shard_latents=64),
        progress=False,
    )
    return out
