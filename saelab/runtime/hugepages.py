"""Transparent huge pages for the large buffers XLA CPU allocates on every call.

XLA CPU mallocs its temporaries (the (batch, d_sae) pre-activations, the scatter outputs, a forward's
activations) on every execution, and glibc serves allocations above 32 MB with fresh `mmap`s, so each call
page-faults its temporaries in 4 KiB at a time. On a 2-core AMD EPYC VM that was a quarter of a TopK train
step (~380 ms -> ~280 ms at batch 4096, d_sae 4608). glibc 2.35+ can back those mappings with transparent
huge pages (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, which madvises them) where the kernel's THP mode is
`madvise` or `always`.

It is not a win everywhere. Measured on that EPYC: the JAX forward to layer 6 ran at the same speed with and
without it (2,859 vs 2,847 tokens/s) and the CE-recovered eval, whose per-call buffers are ~1.6 GB of
log-probs, ran slower with it (186-208 vs 238-263 tokens/s; the kernel's time went up). So `saelab train`
turns it on by default and the other commands do not. The tunable is read when a process starts, so the
command re-executes itself once with it set. `SAELAB_HUGEPAGES=1` turns it on for any command, `0` off for
all; a library user sets GLIBC_TUNABLES before starting Python.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
DEFAULT_COMMANDS = ("train",)  # the commands that measured faster with huge pages
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def thp_mode(path: Path = THP_ENABLED) -> str | None:
    """The kernel's THP mode (`always`, `madvise` or `never`), None where the file is absent (not Linux)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def glibc_supports_hugetlb() -> bool:
    """glibc 2.35 or later (the first with `glibc.malloc.hugetlb`)."""
    lib, version = platform.libc_ver()
    if lib != "glibc" or not version:
        return False
    major, minor = (int(v) for v in version.split(".")[:2])
    return (major, minor) >= (2, 35)


def hugepage_env(
    env: Mapping[str, str], mode: str | None, glibc_ok: bool, command: str | None = None
) -> dict[str, str] | None:
    """`env` with the tunable added to GLIBC_TUNABLES, or None when it is set already, not wanted (SAELAB_HUGEPAGES=0,
    or unset and `command` not in DEFAULT_COMMANDS) or unavailable (THP never/absent, glibc too old)."""
    current = env.get("GLIBC_TUNABLES", "")
    wanted = {"1": True, "0": False}.get(env.get("SAELAB_HUGEPAGES", ""), command in DEFAULT_COMMANDS)
    if not wanted or "glibc.malloc.hugetlb" in current:
        return None
    if mode not in ("madvise", "always") or not glibc_ok:
        return None
    return {**env, "GLIBC_TUNABLES": f"{current}:{TUNABLE}" if current else TUNABLE}


def reexec_with_hugepages(command: str | None) -> None:
    """Replace this process by the same command line with the tunable set, when `hugepage_env` says so for
    `command` (a `saelab` subcommand; None for anything else).

    Call it first thing in an entry point, before anything has run that a restart would repeat."""
    env = hugepage_env(os.environ, thp_mode(), glibc_supports_hugetlb(), command)
    if env is not None:  # the child sees the tunable set and does not re-execute again
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def state() -> dict[str, object]:
    """What a bench records: the THP mode and whether this process runs with the tunable."""
    return {"thp": thp_mode(), "malloc_hugetlb": "glibc.malloc.hugetlb=1" in os.environ.get("GLIBC_TUNABLES", "")}
