"""Settings of the suite's experiment stages: `TableConfig` (stage kind `saebench-table`, table.py), the SAEs it
puts side by side and where the table goes."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from saelab.runtime.config import Config


class TableEntry(Config):
    """One SAE of the table: its name and the JSONs its stages wrote."""

    name: str
    """Row label (e.g. `topk` or `SAELens topk`)."""
    suite: Path
    """Its SAEBench suite JSON (`saelab eval --suite ...`)."""
    autointerp: Path | None = None
    """Its autointerp JSON (`saelab autointerp`); None leaves those columns empty."""


class TableConfig(Config):
    """Settings of the `saebench-table` stage."""

    saes: list[TableEntry] = Field(min_length=1)
    """The SAEs, one row each, in this order."""
    out: Path
    """Markdown table; the plot goes beside it as `.png`, the rows as `.json`."""
    title: str = ""
