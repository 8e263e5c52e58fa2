"""Tests run on CPU; several simulate devices with XLA_FLAGS in subprocesses. Their data ships with the project
(`saelab/data/texts/`, `tests/data/files/`), so nothing beside the checkout is needed."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
