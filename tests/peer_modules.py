"""The peers (SAELens, sparsify) as test oracles. `just test` installs them (the bench extra), so a missing peer
fails the test that needs it, with the command that installs it; it never skips."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

EXTRA = {
    "sae_lens": "sae-lens",
    "sparsify": "eai-sparsify",
    "circuit_tracer": "circuit-tracer",
    "sae_bench": "sae-bench",
    "sae_probes": "sae-probes",
}
# Peers outside the bench extra, with how to install them: circuit-tracer 0.5 pins transformers<=4.57.3 and
# huggingface-hub<1.0, which the bench extra's SAELens and the torch extra's transformers 5 do not allow.
INSTALL = {
    "circuit_tracer": "not in the bench extra (its pins clash); `pip install --no-deps circuit-tracer==0.5.0`",
    "sae_bench": "not in the bench extra (it pins a CUDA torch); `just setup-bench` installs it with --no-deps",
    "sae_probes": "not in the bench extra (it pins a CUDA torch); `just setup-bench` installs it with --no-deps",
}


def peer(module: str) -> ModuleType:
    """Import a peer module (or one of its submodules), or fail naming the install command."""
    top = module.split(".")[0]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        msg = f"{module} ({EXTRA[top]}) is a peer in the bench extra: `pip install -e '.[bench]'` (`just test`)"
        msg = f"{module} ({EXTRA[top]}) is a peer, {INSTALL[top]}" if top in INSTALL else msg
        pytest.fail(f"{msg}: {e}", pytrace=False)
    if module == "sparsify" and not hasattr(mod, "SparseCoder"):
        pytest.fail(
            "the `sparsify` installed is another project of that name; `pip install eai-sparsify`", pytrace=False
        )
    return mod


# What `just setup` / `just setup-browser` install for the tests that are not peers: missing, they fail the test
# that needs them with the command that installs them, as a missing peer does.
SETUP = {
    "torch": "the torch extra (torch builds the random reference models): `just setup`",
    "transformers": "the torch extra (transformers writes the random reference checkpoints): `just setup`",
    "selenium": "Selenium drives the headless-Chromium page tests: `just setup-browser`",
    "bm25s": "the select extra: `just setup`",
    "sklearn": "the select extra: `just setup`",
}


def needed(module: str) -> ModuleType:
    """Import a module `just setup` (or `just setup-browser`) installs, or fail naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"{module} is missing: {SETUP[module.split('.')[0]]} ({e})", pytrace=False)
