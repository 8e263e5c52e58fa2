"""`hf:NAME[:CONFIG]:SPLIT:FIELD`: a Hugging Face dataset, streamed (nothing is downloaded up front).

`datasets` is optional (the `hf` extra, `pip install 'saelab[hf]'`): it is imported only when such a spec is
opened, so the other sources work without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

from saelab.data.sources.base import Source, join_fields, split_fields

USAGE = "hf:NAME[:CONFIG]:SPLIT:FIELD"


def open_source(args: str) -> Source:
    parts = args.split(":")
    if len(parts) == 3:
        name, config, split, field = parts[0], None, parts[1], parts[2]
    elif len(parts) == 4:
        name, config, split, field = parts
    else:
        raise ValueError(
            f"hf:{args} has {len(parts)} parts; expected {USAGE}, e.g. hf:wikitext:wikitext-103-raw-v1:train:text"
        )
    if not (name and split):
        raise ValueError(f"hf:{args}: empty NAME or SPLIT; expected {USAGE}")
    fields = split_fields(field, USAGE)
    _import_datasets()
    return Source(name=f"hf:{args}", revision="", read=lambda: read_hf(name, config, split, fields))


def read_hf(name: str, config: str | None, split: str, fields: list[str]) -> Iterator[str]:
    """Rows of the streamed dataset in the hub's order, with `fields` joined by newlines."""
    datasets = _import_datasets()
    what = f"Hugging Face dataset {name!r} (config {config!r}, split {split!r})"
    try:
        rows = iter(datasets.load_dataset(name, config, split=split, streaming=True))
        first = next(rows, None)
    except Exception as e:  # network, auth and not-found errors come in many library-specific types
        raise RuntimeError(
            f"could not stream {what}: the Hugging Face hub is unreachable (offline?) or the name, config or "
            f"split is wrong. Original error: {type(e).__name__}: {e}. Offline, download the data elsewhere "
            "and use text:PATH or jsonl:PATH:FIELD"
        ) from e
    if first is None:
        return
    yield join_fields(first, fields, f"{what} row 0")
    for i, row in enumerate(rows, 1):
        yield join_fields(row, fields, f"{what} row {i}")


def _import_datasets() -> ModuleType:
    try:
        import datasets
    except ImportError as e:
        raise ImportError(
            f"corpus spec {USAGE} needs the `datasets` package, which the `hf` extra installs: "
            "pip install 'saelab[hf]' (or pip install datasets)"
        ) from e
    return datasets
