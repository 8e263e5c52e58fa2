"""argparse flags generated from a pydantic config: one `--flag` per field, its docstring as the help.

Keeps each stage's config declared once (the pydantic class) and its `--help` true by construction.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel


def add_config_args(parser: argparse.ArgumentParser, model: type[BaseModel], skip: tuple[str, ...] = ()) -> None:
    """Add `--field-name` for every field of `model` not in `skip` (bools become on/off switches)."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        ann = field.annotation
        args = typing.get_args(ann)
        default = None if field.is_required() else field.default
        help_text = (field.description or "") + ("" if field.is_required() else f" (default: {default})")
        help_text = help_text.replace("%", "%%")
        kw: dict[str, Any] = {"dest": name, "help": help_text, "default": argparse.SUPPRESS}
        if field.is_required():
            kw["required"] = True
        if ann is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(ann) is typing.Literal:
            parser.add_argument(flag, choices=list(args), **kw)
        elif typing.get_origin(ann) is list:
            parser.add_argument(flag, type=lambda s: [x for x in s.split(",") if x], metavar="A,B,...", **kw)
        else:
            base = next((a for a in args if a is not type(None)), ann) if isinstance(ann, types.UnionType) else ann
            parser.add_argument(flag, type=base if base in (int, float, str, Path) else str, **kw)


def config_from_args(model: type[BaseModel], ns: argparse.Namespace, **extra: Any) -> BaseModel:
    """Build the config from the flags that were given (defaults come from the model itself)."""
    given = {k: v for k, v in vars(ns).items() if k in model.model_fields}
    return model(**given, **extra)
