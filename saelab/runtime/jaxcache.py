"""A persistent JAX compilation cache, so that a second run of a command compiles nothing it compiled before.

The cache is process-wide JAX state, so no library function turns it on: the command line does, when asked with
`--jax-cache` (on `saelab circuits` and `saelab run`, whose wall time is mostly XLA compilation) or by setting
`SAELAB_JAX_CACHE` for any command. A library user calls `enable_compilation_cache()` themselves.

`SAELAB_JAX_CACHE` holds the directory (`1`/`on`: the default `~/.cache/saelab/jax`); `off` keeps the cache off
even where `--jax-cache` is given. Programs that compile in under `min_compile_s` are not stored.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

ENV = "SAELAB_JAX_CACHE"
DEFAULT_DIR = Path("~/.cache/saelab/jax")
_OFF = ("off", "0", "none", "false", "no")
_ON = ("on", "1", "true", "yes")


def cache_dir(env: Mapping[str, str] = os.environ) -> Path | None:
    """Where compiled programs are kept once the cache is on: `$SAELAB_JAX_CACHE` or the default; None when it
    is set to "off"."""
    value = env.get(ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if value.lower() in _ON:
        return DEFAULT_DIR.expanduser()
    return Path(value or DEFAULT_DIR).expanduser()


def requested(flag: bool, env: Mapping[str, str] = os.environ) -> Path | None:
    """The directory the command line turns the cache on at: asked by `flag` (`--jax-cache`) or by setting
    `SAELAB_JAX_CACHE`; None when neither asks or the variable says "off"."""
    if not flag and not env.get(ENV, "").strip():
        return None
    return cache_dir(env)


def add_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--jax-cache` to a subcommand whose runs are dominated by compilation; `enable_from_args` acts on it."""
    parser.add_argument(
        "--jax-cache",
        action="store_true",
        help=f"keep compiled programs on disk (${ENV}, default {DEFAULT_DIR}) so a second run with the same "
        f"shapes skips compilation; setting {ENV} turns it on for every command, {ENV}=off never",
    )
    return parser


def enable_from_args(ns: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Path | None:
    """Turn the cache on when the parsed command line or `SAELAB_JAX_CACHE` asks; return its directory or None."""
    where = requested(bool(getattr(ns, "jax_cache", False)), env)
    return enable_compilation_cache(where) if where is not None else None


def enable_compilation_cache(path: str | Path | None = None, min_compile_s: float = 0.2) -> Path | None:
    """Point JAX's persistent compilation cache at `path` (default: `cache_dir()`) and return it; None when
    `path` is None and `SAELAB_JAX_CACHE=off`. Changes JAX's configuration for the whole process; safe to call
    more than once."""
    import jax  # here, not at the top: the command line imports this module to add its flag
    from jax.experimental.compilation_cache import compilation_cache

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
