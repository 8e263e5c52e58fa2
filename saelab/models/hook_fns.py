"""User hook functions as a compiled program's key plus data, so a new lambda does not mean a new compile.

A notebook loop such as

    for i in latents:
        model.run_with_hooks(tokens, fwd_hooks=[(name, lambda act, hook: act.at[..., i].set(0))])

makes a new function object each time; keyed by the object, every call would trace and compile the model
again. `lift` splits a plain Python function into a hashable template (its code, and every object it reads
that is not a number or an array) and the numbers and arrays it reads from its closure, its defaults and its
globals, which go into the compiled program as arguments. Functions that read the same code and the same
objects share one program whatever numbers they close over. A function that uses such a number as a shape or
in Python control flow cannot take it as data; `Lifted.concrete` keys it by value instead (one program per
value, what every call cost before).

TransformerLens's calling convention is adapted here too: a hook may take `(act, hook)` (the `HookPoint`
naming where it runs, as TransformerLens passes) and may return None for "unchanged".
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import numpy as np

from saelab.models.hook_args import HookPoint
from saelab.models.hooks import HookFn

_DATA_TYPES = (int, float, complex, np.ndarray, np.generic, jax.Array)


class Lifted(NamedTuple):
    """A hook function's static part: hashable, equal for functions that differ only in the data they read."""

    code: Any  # the function's code object, or the callable itself when it is not a plain function
    globals_id: int
    name: str
    static: tuple  # (where, key, value identity) of everything read that is not data
    data_slots: tuple  # (where, key) of the numbers and arrays read, in the order of the data tuple
    arity: int  # 1: fn(act); 2: fn(act, hook) (TransformerLens); 3: fn(act, positions) (needs_positions)
    concrete_values: tuple = ()  # data keyed by value (for functions that need concrete numbers)

    def bind(self, fn: Callable, data: tuple, hook_name: str) -> HookFn:
        """A HookContext hook for `hook_name`: the function rebuilt with `data` in place of what it read."""
        f = _rebuild(fn, self.data_slots, data) if self.data_slots else fn
        if self.arity == 3:
            return f
        if self.arity == 2:
            point = HookPoint(hook_name)
            return lambda x: _unchanged_if_none(f(x, point), x, hook_name)
        return lambda x: _unchanged_if_none(f(x), x, hook_name)

    def concrete(self, fn: Callable) -> Lifted:
        """The same template with the data keyed by value instead of passed in (no data slots)."""
        values = tuple(_key(v) for v in _read(fn, self.data_slots))
        return self._replace(data_slots=(), concrete_values=values)


def lift(fn: Callable) -> tuple[Lifted, tuple, tuple]:
    """(template, data, objects the template names by identity) for a user hook: see the module docstring."""
    arity = _arity(fn)
    if isinstance(fn, tuple) and hasattr(fn, "_fields"):  # a NamedTuple edit (Steer, Clamp): fields as data
        slots = [("field", k) for k, v in zip(fn._fields, fn, strict=True) if _is_data(v)]
        static = tuple((k, _key(v)) for k, v in zip(fn._fields, fn, strict=True) if not _is_data(v))
        data = tuple(_read(fn, slots))
        return Lifted(type(fn), 0, type(fn).__name__, static, tuple(slots), arity), data, (fn,)
    if not isinstance(fn, types.FunctionType):
        return Lifted(_key(fn), 0, "", (), (), arity), (), (fn,)
    slots, static, keep = [], [], [fn]
    for where, key, value in _reads(fn):
        if _is_data(value):
            slots.append((where, key))
        else:
            static.append((where, key, _key(value)))
            keep.append(value)
    data = tuple(_read(fn, slots))
    return Lifted(fn.__code__, id(fn.__globals__), fn.__name__, tuple(static), tuple(slots), arity), data, tuple(keep)


@dataclass(frozen=True)
class LiftedHooks:
    """Hooks by name as a compiled program's key: equal (and hashed) by their templates only. It keeps the
    functions it was made from (to rebuild them inside the trace) and every object a template names by
    identity alive, so an identity cannot be reused while a program keyed by it is cached."""

    names: tuple[str, ...]
    templates: tuple[Lifted, ...]
    functions: tuple = field(compare=False, hash=False)
    keep: tuple = field(compare=False, hash=False)

    def bind(self, data: tuple) -> dict[str, HookFn]:
        """{name: hook} for a HookContext (inside the trace); several hooks on one name run in order."""
        bound: dict[str, list[HookFn]] = {}
        for n, t, f, d in zip(self.names, self.templates, self.functions, data, strict=True):
            bound.setdefault(n, []).append(t.bind(f, d, n))
        for n, fs in bound.items():
            if len(fs) > 1 and any(getattr(f, "needs_positions", False) for f in fs):
                raise ValueError(f"{len(fs)} hooks at {n}, one of them taking positions: give that point one hook")
        return {n: fs[0] if len(fs) == 1 else _Chain(tuple(fs)) for n, fs in bound.items()}

    def concrete(self, data: tuple) -> LiftedHooks:
        """The same hooks with their data keyed by value (for functions that need concrete numbers); arrays
        are keyed by identity, so they are kept alive with the key."""
        templates = tuple(t.concrete(f) for t, f in zip(self.templates, self.functions, strict=True))
        return LiftedHooks(self.names, templates, self.functions, self.keep + tuple(jax.tree.leaves(data)))

    @property
    def no_data(self) -> tuple:
        return tuple(() for _ in self.names)


def lift_hooks(hooks: Mapping[str, Callable] | Sequence[tuple[str, Callable]] | None) -> tuple[LiftedHooks, tuple]:
    """(LiftedHooks, data) for a {name: fn} mapping or a list of (name, fn) pairs (several per name allowed,
    applied in the order given); names sorted stably so equal hook sets share a key."""
    items = list(hooks.items()) if isinstance(hooks, Mapping) else list(hooks or ())
    items = sorted(items, key=lambda item: item[0])
    lifted = [lift(fn) for _, fn in items]
    keep = tuple(obj for _, _, k in lifted for obj in k)
    names = tuple(n for n, _ in items)
    return LiftedHooks(names, tuple(t for t, _, _ in lifted), tuple(fn for _, fn in items), keep), tuple(
        d for _, d, _ in lifted
    )


def call_lifted(run: Callable[[LiftedHooks, tuple], Any], lifted: LiftedHooks, data: tuple) -> Any:
    """`run(lifted, data)`, or, when a hook needs its numbers concrete (a shape, an `if`), the same with them
    keyed by value; the choice is remembered for that template."""
    if lifted in _NEEDS_CONCRETE:
        return run(lifted.concrete(data), lifted.no_data)
    try:
        return run(lifted, data)
    except TRACER_ERRORS:
        if not any(data):
            raise
        _NEEDS_CONCRETE.add(lifted)
        return run(lifted.concrete(data), lifted.no_data)


class _Chain(NamedTuple):
    fns: tuple

    def __call__(self, x: jax.Array) -> jax.Array:
        for f in self.fns:
            x = f(x)
        return x


_NEEDS_CONCRETE: set[LiftedHooks] = set()


TRACER_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerArrayConversionError,
    IndexError,
    TypeError,
)


def _is_data(value: Any) -> bool:
    """Numbers, arrays, and tuples of numbers (a NamedTuple edit's latents or values) go in as data."""
    if isinstance(value, bool):
        return False
    if isinstance(value, tuple) and value and not hasattr(value, "_fields"):
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    return isinstance(value, _DATA_TYPES)


def _arity(fn: Callable) -> int:
    if getattr(fn, "needs_positions", False):
        return 3
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if any(p.kind == p.VAR_POSITIONAL for p in params) or len(required) >= 2:
        return 2
    return 1


def _reads(fn: types.FunctionType):
    """(where, key, value) for what a plain function reads: closure cells, defaults, keyword defaults and the
    globals its code names (attribute names that are not globals are skipped)."""
    for i, cell in enumerate(fn.__closure__ or ()):
        try:
            yield "cell", i, cell.cell_contents
        except ValueError:  # an empty cell (a name assigned later in the enclosing scope)
            yield "cell", i, None
    for i, v in enumerate(fn.__defaults__ or ()):
        yield "default", i, v
    for k, v in sorted((fn.__kwdefaults__ or {}).items()):
        yield "kwdefault", k, v
    for name in _global_names(fn.__code__):
        if name in fn.__globals__:
            yield "global", name, fn.__globals__[name]


def _global_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _global_names(const)
    return sorted(set(names))


def _read(fn: types.FunctionType, slots) -> list[Any]:
    out = []
    for where, key in slots:
        if where == "field":
            out.append(getattr(fn, key))
        elif where == "cell":
            out.append(fn.__closure__[key].cell_contents)
        elif where == "default":
            out.append(fn.__defaults__[key])
        elif where == "kwdefault":
            out.append(fn.__kwdefaults__[key])
        else:
            out.append(fn.__globals__[key])
    return out


def _rebuild(fn: Any, slots, data: tuple) -> Any:
    if not isinstance(fn, types.FunctionType):  # a NamedTuple edit
        return fn._replace(**{key: value for (_, key), value in zip(slots, data, strict=True)})
    cells = list(fn.__closure__ or ())
    defaults = list(fn.__defaults__ or ())
    kwdefaults = dict(fn.__kwdefaults__ or {})
    globs = fn.__globals__
    for (where, key), value in zip(slots, data, strict=True):
        if where == "cell":
            cells[key] = types.CellType(value)
        elif where == "default":
            defaults[key] = value
        elif where == "kwdefault":
            kwdefaults[key] = value
        else:
            if globs is fn.__globals__:
                globs = dict(fn.__globals__)
            globs[key] = value
    new = types.FunctionType(fn.__code__, globs, fn.__name__, tuple(defaults) or None, tuple(cells) or None)
    new.__kwdefaults__ = kwdefaults or None
    new.__dict__.update(fn.__dict__)  # attributes such as needs_positions
    return new


def _key(value: Any) -> Any:
    """A hashable stand-in for a value: the value itself when hashable (by value), else its identity."""
    if isinstance(value, np.ndarray | jax.Array):
        return ("array", id(value))
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return ("value", type(value), value)


def _unchanged_if_none(y: jax.Array | None, x: jax.Array, name: str) -> jax.Array:
    if y is None:
        return x
    if not hasattr(y, "shape"):
        raise TypeError(f"the hook at {name} returned {type(y).__name__}; return the (edited) activation or None")
    return y
