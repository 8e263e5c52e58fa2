"""argparse flags generated from a pydantic config, and the `--config FILE.toml` / `--set key=value` layers.

Keeps each stage's config declared once (the pydantic class) and its `--help` true by construction. Every
command built with `add_config_args` reads its options from three places, later ones winning: the TOML file of
`--config` (its top level, or a table named after the command such as `[harvest]`), `--set key=value`
(values parsed as TOML, bare words as strings, as `saelab train --set` does), then the flags and positional
arguments given. Unknown keys are errors, and a key given both by `--set` and by its flag is ambiguous.
"""

from __future__ import annotations

import argparse
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from saelab.runtime.config import explain_errors, suggestions

_LABELS = "_config_labels"
_COMMAND = "_config_command"


def add_config_args(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    skip: tuple[str, ...] = (),
    *,
    positional: str | None = None,
    metavar: str | None = None,
    positional_help: str | None = None,
) -> None:
    """Add `--config`, `--set` and `--field-name` for every field of `model` not in `skip` (bools become on/off
    switches). Required fields are checked by `config_from_args`, so that the file may supply them.

    `positional` names a field given as a positional argument instead of a flag (optional, so that the file
    may give it; a list field takes any number), with `metavar` and `positional_help` (default: the field's
    description), each help ending "(or `NAME` in --config)"."""
    if positional is not None:
        field = model.model_fields[positional]
        parser.add_argument(
            positional,
            nargs="*" if typing.get_origin(field.annotation) is list else "?",
            metavar=metavar,
            default=argparse.SUPPRESS,
            help=f"{positional_help or (field.description or positional).rstrip('.')} (or `{positional}` in --config)",
        )
        skip = (*skip, positional)
    command = "-".join(w for w in parser.prog.split()[1:] if re.fullmatch(r"[a-z][a-z0-9-]*", w))
    parser.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE.toml",
        default=argparse.SUPPRESS,
        help=f"TOML file of this command's options (top-level keys or a [{command}] table, named as the fields "
        "below with underscores); --set and flags override it",
    )
    parser.add_argument(
        "--set",
        dest="config_set",
        action="append",
        metavar="KEY=VALUE",
        default=argparse.SUPPRESS,
        help="override one option, e.g. --set tokens=100000 (value parsed as TOML; repeatable)",
    )
    labels = {name: _existing_label(parser, name) or "--" + name.replace("_", "-") for name in model.model_fields}
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        ann = field.annotation
        args = typing.get_args(ann)
        default = None if field.is_required() else field.default
        help_text = (field.description or "") + (" (required)" if field.is_required() else f" (default: {default})")
        help_text = help_text.replace("%", "%%")
        kw: dict[str, Any] = {"dest": name, "help": help_text, "default": argparse.SUPPRESS}
        if ann is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(ann) is typing.Literal:
            parser.add_argument(flag, choices=list(args), **kw)
        elif typing.get_origin(ann) is list:
            parser.add_argument(flag, type=lambda s: [x for x in s.split(",") if x], metavar="A,B,...", **kw)
        else:
            base = next((a for a in args if a is not type(None)), ann) if isinstance(ann, types.UnionType) else ann
            parser.add_argument(flag, type=base if base in (int, float, str, Path) else str, **kw)
    parser.set_defaults(**{_LABELS: labels, _COMMAND: command})


def add_config_command(
    sub: argparse._SubParsersAction,
    name: str,
    model: type[BaseModel],
    fn: Callable[[argparse.Namespace], Any],
    *,
    help: str,
    description: str | None = None,
    **config_args: Any,
) -> argparse.ArgumentParser:
    """The subcommand `name` of a stage: its options are `model`'s fields (`add_config_args`, which takes
    `config_args`), its handler `fn`; returned for any flags of its own."""
    p = sub.add_parser(name, help=help, description=description)
    add_config_args(p, model, **config_args)
    p.set_defaults(fn=fn)
    return p


def config_from_args(model: type[BaseModel], ns: argparse.Namespace, **extra: Any) -> BaseModel:
    """Build the config from `--config`, then `--set`, then the flags given and `extra` (values the command
    passes itself; None means not given). Defaults come from the model itself."""
    given = {k: v for k, v in vars(ns).items() if k in model.model_fields} | {
        k: v for k, v in extra.items() if v is not None
    }
    labels: dict[str, str] = getattr(ns, _LABELS, {})
    return build_config(
        model,
        file=getattr(ns, "config_file", None),
        sets=getattr(ns, "config_set", ()),
        given=given,
        command=getattr(ns, _COMMAND, ""),
        labels=labels,
    )


def build_config(
    model: type[BaseModel],
    *,
    file: str | Path | None = None,
    sets: Iterable[str] = (),
    given: Mapping[str, Any] | None = None,
    command: str = "",
    labels: Mapping[str, str] | None = None,
) -> BaseModel:
    """`model` from a TOML file, `key=value` overrides and already-typed values, in that order of precedence."""
    given = dict(given or {})
    labels = labels or {}
    raw = read_config_file(file, model, command) if file is not None else {}
    overrides = parse_sets(sets, model)
    twice = sorted(set(overrides) & set(given))
    if twice:
        raise ValueError(
            "given both by --set and on the command line: "
            + ", ".join(f"{k} (--set {k}=... and {labels.get(k, k)})" for k in twice)
            + "; give each option once"
        )
    merged = raw | overrides | given
    missing = [labels.get(n, n) for n, f in model.model_fields.items() if f.is_required() and n not in merged]
    if missing:
        raise ValueError(
            f"{command or model.__name__} needs {' and '.join(missing)}: give "
            f"{'it' if len(missing) == 1 else 'them'} on the command line, or in a --config file"
        )
    try:
        return model(**merged)
    except ValidationError as e:
        where = f" (from {file}, --set and flags)" if file is not None else ""
        why = explain_errors(e, model, labels)
        raise ValueError(f"invalid {command or model.__name__} options{where}:\n{why}") from None


def read_config_file(path: str | Path, model: type[BaseModel], command: str = "") -> dict[str, Any]:
    """The options in a TOML file: its top-level keys, or its `[command]` table; unknown keys are errors."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {p} is not valid TOML: {e}") from None
    if "stages" in data:
        raise ValueError(f"{p} is an experiment file ([[stages]]); run it with `saelab run {p}`")
    if command and list(data) == [command] and isinstance(data[command], dict):
        data = data[command]
    _check_keys(data, model, f"config file {p}")
    return data


def parse_sets(items: Iterable[str], model: type[BaseModel]) -> dict[str, Any]:
    """`["tokens=1000", "hooks=['a']"]` -> {"tokens": 1000, "hooks": ["a"]}; dashes in keys read as underscores."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key] = parse_value(value)
    _check_keys(out, model, "--set")
    return out


def parse_value(text: str) -> Any:
    """A `--set` value: TOML (`3`, `1e-3`, `true`, `['a', 'b']`, `'text'`), or the bare text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _check_keys(data: Mapping[str, Any], model: type[BaseModel], where: str) -> None:
    unknown = sorted(set(data) - set(model.model_fields))
    if unknown:
        raise ValueError(
            f"{where}: unknown option(s) {unknown}; valid ones: {', '.join(model.model_fields)}"
            + suggestions(unknown, model.model_fields)
        )


def _existing_label(parser: argparse.ArgumentParser, dest: str) -> str | None:
    """How the user gives `dest` when the command declared it itself (a positional's metavar, or its flag)."""
    for action in parser._actions:
        if action.dest == dest:
            return action.option_strings[0] if action.option_strings else (action.metavar or dest.upper())
    return None
