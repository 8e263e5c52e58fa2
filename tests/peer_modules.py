"""The peers (SAELens, sparsify) as test oracles. `just test` installs them (the bench extra), so a missing peer
fails the test that needs it, with the command that installs it; `SAELAB_SKIP_PEERS=1` turns that failure into
a skip for a developer who chose not to install them. CI never sets it."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

EXTRA = {"sae_lens": "sae-lens", "sparsify": "eai-sparsify"}


def peer(module: str) -> ModuleType:
    """Import a peer module, or fail (skip under SAELAB_SKIP_PEERS=1) naming the install command."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        msg = f"{module} ({EXTRA[module]}) is a peer in the bench extra: `pip install -e '.[bench]'` (`just test`)"
        if os.environ.get("SAELAB_SKIP_PEERS") == "1":
            pytest.skip(msg + "; skipped because SAELAB_SKIP_PEERS=1")
        pytest.fail(f"{msg}: {e}", pytrace=False)
    if module == "sparsify" and not hasattr(mod, "SparseCoder"):
        pytest.fail(
            "the `sparsify` installed is another project of that name; `pip install eai-sparsify`", pytrace=False
        )
    return mod
