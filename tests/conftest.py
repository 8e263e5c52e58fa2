"""Tests run on CPU; several simulate devices with XLA_FLAGS in subprocesses. Their data ships with the project
(`saelab/data/texts/`, `tests/data/files/`), so nothing beside the checkout is needed."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# A command given `--jax-cache` turns on JAX's persistent compilation cache for its process; in the one pytest
# process that would store every later test's programs in ~/.cache. tests/circuits/test_jaxcache.py sets its own
# directory.
os.environ.setdefault("SAELAB_JAX_CACHE", "off")
