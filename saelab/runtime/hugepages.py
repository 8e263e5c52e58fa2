"""Transparent huge pages for the large buffers XLA CPU allocates on every call, when a user asks for them.

XLA CPU mallocs its temporaries (the (batch, d_sae) pre-activations, the scatter outputs, a forward's
activations) on every execution, and glibc serves allocations above 32 MB with fresh `mmap`s, so each call
page-faults its temporaries in 4 KiB at a time. glibc 2.35+ can back those mappings with transparent huge pages
(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, which madvises them) where the kernel's THP mode is `madvise` or
`always`.

Whether that is a win depends on the machine and the command (it can speed up a train step and slow down an
eval whose buffers are mostly log-probs; docs/benchmarks.md has numbers), so it is opt-in:
`saelab train --hugepages`, or SAELAB_HUGEPAGES=1 for any command (`0` turns it off even where a flag asks).
The tunable is read when a process starts, so the command re-executes itself once with it set; a library user
sets GLIBC_TUNABLES before starting Python.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

TUNABLE = "glibc.malloc.hugetlb=1"
ENV = "SAELAB_HUGEPAGES"
FLAG = "--hugepages"
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


def add_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--hugepages` to a subcommand; the console script acts on it (`asked`) before parsing, since the
    tunable only takes effect in a fresh process."""
    parser.add_argument(
        FLAG,
        action="store_true",
        help="re-run this command under transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1) where the "
        f"kernel and glibc offer them; off by default, as it is faster on some machines and slower on others; "
        f"{ENV}=1 turns it on for any command, {ENV}=0 off",
    )
    return parser


def asked(argv: Sequence[str]) -> bool:
    """Whether a command line asks for huge pages: `--hugepages` among its options (before any `--`)."""
    args = list(argv)
    return FLAG in (args[: args.index("--")] if "--" in args else args)


def hugepage_env(
    env: Mapping[str, str], mode: str | None, glibc_ok: bool, wanted: bool = False
) -> dict[str, str] | None:
    """`env` with the tunable added to GLIBC_TUNABLES, or None when it is set already, not wanted (SAELAB_HUGEPAGES=0,
    or unset and `wanted` false) or unavailable (THP never/absent, glibc too old)."""
    current = env.get("GLIBC_TUNABLES", "")
    if not {"1": True, "0": False}.get(env.get(ENV, ""), wanted) or "glibc.malloc.hugetlb" in current:
        return None
    if mode not in ("madvise", "always") or not glibc_ok:
        return None
    return {**env, "GLIBC_TUNABLES": f"{current}:{TUNABLE}" if current else TUNABLE}


def reexec_with_hugepages(wanted: bool = False) -> None:
    """Replace this process by the same command line with the tunable set, when `hugepage_env` says so (`wanted`:
    the caller asks for huge pages; SAELAB_HUGEPAGES overrides it either way).

    Call it first thing in an entry point, before anything has run that a restart would repeat."""
    env = hugepage_env(os.environ, thp_mode(), glibc_supports_hugetlb(), wanted)
    if env is not None:  # the child sees the tunable set and does not re-execute again
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


class HugePageState(NamedTuple):
    """What a bench records about huge pages."""

    thp: str | None  # the kernel's THP mode (`thp_mode`)
    malloc_hugetlb: bool  # whether this process runs with the tunable


def state() -> HugePageState:
    """The THP mode and whether this process runs with the tunable."""
    return HugePageState(thp_mode(), TUNABLE in os.environ.get("GLIBC_TUNABLES", ""))
