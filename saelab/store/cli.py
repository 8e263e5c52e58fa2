"""Subcommands `saelab store info` and `saelab store verify`: parse, read the store, print."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `store` subcommand group to the `saelab` subparsers."""
    store = sub.add_parser("store", help="inspect and verify activation stores").add_subparsers(
        dest="store_cmd", required=True
    )
    si = store.add_parser("info", help="tokens, hooks, d_model, dtype, shards and provenance of a store")
    si.add_argument("store", help="store directory")
    si.add_argument("--json", action="store_true", help="print JSON")
    si.set_defaults(fn=_info)
    sv = store.add_parser(
        "verify", help="check every shard's size and checksum (--deep: and finiteness); exits 1 naming bad shards"
    )
    sv.add_argument("store", help="store directory")
    sv.add_argument("--deep", action="store_true", help="also read every activation and name NaN/Inf rows")
    sv.set_defaults(fn=_verify)


def _info(a: argparse.Namespace) -> None:
    from saelab.runtime.console import print_table
    from saelab.store import store_info

    info = store_info(a.store)
    if a.json:
        print(json.dumps(info, indent=2))
        return
    rows = []
    for k, v in info.items():
        rows += [(f"meta.{mk}", str(mv)) for mk, mv in v.items()] if k == "meta" else [(k, v)]
    print_table(f"activation store {a.store}", rows)


def _verify(a: argparse.Namespace) -> int:
    from saelab.store import verify_store

    problems = verify_store(a.store, deep=a.deep)
    for p in problems:
        print(f"{a.store}/{p.file}: {p.problem}")
    sound = "all shards present and checksums match" + (", every activation finite" if a.deep else "")
    fix = "re-harvest the store with --overwrite (the same settings rebuild it)"
    print(f"{len(problems)} problem(s): {fix}" if problems else f"{a.store}: {sound}")
    return 1 if problems else 0
