"""Key/value tables on the terminal, as `saelab model info` and `saelab store info` print them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def print_table(title: str, rows: Iterable[tuple[str, Any]]) -> None:
    """A two-column table; integers get thousands separators (booleans stay True/False)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_header=False)
    for k, v in rows:
        t.add_row(k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
    Console().print(t)
