"""Fixtures: the synthetic store for exact comparisons; a small real SmolLM2 store, a random SAE over it
and the report built from them for the site, CLI and browser tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .inspect_helpers import real_store_and_sae, write_store


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("store") / "s")


@pytest.fixture(scope="session")
def real(tmp_path_factory) -> tuple[Path, Path]:
    """(store, SAE): 2,048 python-docs tokens of SmolLM2 layer 3, and a random TopK SAE over them."""
    return real_store_and_sae(tmp_path_factory.mktemp("real"), tokens=2048, d_sae=200)


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
