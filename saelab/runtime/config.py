"""`Config`: the one pydantic base of saelab's configs (stages, sections, the SAE), and pydantic's validation
errors said in the command's words.

Unknown keys are errors (a typo in a TOML file fails before any compute), values are frozen once validated,
and the docstring under each field is its description, which `cliargs` turns into `--help`. Every loader
reports a `ValidationError` through `explain_errors`: one line per problem, named as the user wrote it
(`train.tokens`, `--tokens`), with the bound or the choices and the value given, and a did-you-mean for
unknown keys, instead of pydantic's dump of error codes and documentation URLs.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Config(BaseModel):
    """Base of every saelab config: extra keys rejected, frozen, field docstrings as descriptions."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """The hint "; did you mean 'x'?" for the closest of `choices` (difflib), or "" when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def suggestions(keys: Iterable[str], valid: Iterable[str]) -> str:
    """The hints "; did you mean 'expansion' for 'expansio'?" for each of `keys` with a close match in `valid`."""
    valid = [str(v) for v in valid]
    out = []
    for k in sorted(keys):
        close = difflib.get_close_matches(str(k), valid, n=1, cutoff=0.6)
        if close:
            out.append(f"; did you mean {close[0]!r} for {k!r}?")
    return "".join(out)


def explain_errors(
    e: ValidationError, model: type[BaseModel] | None = None, labels: Mapping[str, str] | None = None
) -> str:
    """The errors of `e` one per line, each "where: what (got value)". `model` is the class validated (its
    field names give unknown keys a did-you-mean); `labels` names top-level fields as the user gave them
    (`{"tokens": "--tokens"}`), else locations read as dotted keys (`train.tokens`)."""
    return "\n".join(f"  {_explain(err, model, labels or {})}" for err in e.errors())


def _explain(err: Mapping[str, Any], model: type[BaseModel] | None, labels: Mapping[str, str]) -> str:
    loc = tuple(err.get("loc", ()))
    where = _where(loc, labels)
    kind, ctx, value = err.get("type", ""), err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        fields = _fields_at(model, loc[:-1])
        hint = did_you_mean(str(loc[-1]), fields) if fields else ""
        valid = f" (valid: {', '.join(fields)})" if fields else ""
        return f"{where}: unknown key{hint}{valid}; remove or rename it"
    if kind in ("value_error", "assertion_error"):  # a validator's own message already names the field
        msg = str(ctx.get("error") or err.get("msg", ""))
        return f"{where}: {msg}" if where and not msg.startswith(where) else msg
    what = _BOUNDS.get(kind)
    if what is not None:
        key = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
        return f"{where}: must be {what} {ctx.get(key[kind])} (got {_show(value)})"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = [c.strip(" '\"") for c in expected.replace(" or ", ", ").split(", ")]
        return f"{where}: must be one of {expected} (got {_show(value)}){did_you_mean(str(value), choices)}"
    if kind == "missing":
        return f"{where}: required; give a value"
    what = _TYPES.get(kind.split("_")[0])
    if what is not None and kind.endswith(("_type", "_parsing", "_from_float")):
        return f"{where}: must be {what} (got {_show(value)})"
    msg = str(err.get("msg", kind))
    return f"{where}: {msg[:1].lower()}{msg[1:]}" + (f" (got {_show(value)})" if _simple(value) else "")


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_TYPES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "tuple": "a list",
    "dict": "a table",
    "model": "a table",
    "path": "a path",
}


def _where(loc: tuple[Any, ...], labels: Mapping[str, str]) -> str:
    parts = [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    if not parts:
        return ""
    head = labels.get(str(parts[0]), str(parts[0])) if not isinstance(parts[0], int) else f"[{parts[0]}]"
    return head + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts[1:])


def _show(value: Any) -> str:
    return repr(value) if _simple(value) else type(value).__name__


def _simple(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def _fields_at(model: type[BaseModel] | None, path: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) config class at `path` inside `model` (of every class of a union, such as
    a store or a model data source); [] when it cannot be told."""
    models = [model] if model is not None else []
    for part in path:
        if isinstance(part, int):
            continue  # a list index: the list's item class was taken with the field
        field = next((m.model_fields[str(part)] for m in models if str(part) in m.model_fields), None)
        models = _models_of(field.annotation) if field is not None else []
    return list(dict.fromkeys(f for m in models for f in m.model_fields))


def _models_of(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic classes inside `annotation` (X, X | Y, X | None, list[X], tuple[X, ...])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, list, tuple):
        return [m for arg in typing.get_args(annotation) for m in _models_of(arg)]
    return []
