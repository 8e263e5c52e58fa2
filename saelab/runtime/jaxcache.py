"""A persistent JAX compilation cache, so that a second run of a command compiles nothing it compiled before.

Commands whose wall time is mostly XLA compilation (`saelab circuits`: one forward, patching and SAE program
per model and prompt shape, each compiled in seconds for a run of seconds) call `enable_compilation_cache()`
first. The directory is `$SAELAB_JAX_CACHE` when set, else `~/.cache/saelab/jax`; `SAELAB_JAX_CACHE=off`
turns the cache off. Programs that compile in under `min_compile_s` are not stored.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV = "SAELAB_JAX_CACHE"
DEFAULT_DIR = Path("~/.cache/saelab/jax")


def cache_dir() -> Path | None:
    """Where compiled programs are kept, from `$SAELAB_JAX_CACHE` or the default; None when set to "off"."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("off", "0", "none", "false"):
        return None
    return Path(value or DEFAULT_DIR).expanduser()


def enable_compilation_cache(path: str | Path | None = None, min_compile_s: float = 0.2) -> Path | None:
    """Point JAX's persistent compilation cache at `path` (default: `cache_dir()`) and return it; None when
    the cache is turned off. Safe to call more than once."""
    where = Path(path).expanduser() if path is not None else cache_dir()
    if where is None:
        return None
    where.mkdir(parents=True, exist_ok=True)
    if jax.config.jax_compilation_cache_dir != str(where):
        # JAX decides once per process whether the cache is used, at the first compilation: start over
        jax.config.update("jax_compilation_cache_dir", str(where))
        compilation_cache.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_s)
    return where
