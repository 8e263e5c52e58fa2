"""Which hooks a call names, in saelab's form ({name: fn}, names) and TransformerLens's (`fwd_hooks` pairs with
predicates, `names_filter`, the `HookPoint` a two-argument hook receives)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from saelab.models.hooks import hook_layer

FwdHooks = Sequence[tuple[str | Callable[[str], bool], Callable]]
"""TransformerLens's `fwd_hooks`: (hook name or a predicate over names, hook function) pairs."""


class HookPoint(NamedTuple):
    """What a two-argument hook gets as its second argument (TransformerLens passes its HookPoint): the name."""

    name: str

    def layer(self) -> int:
        """The block index of a `blocks.L.` hook point (TransformerLens's `hook.layer()`)."""
        return hook_layer(self.name)


def pick_names(available: Sequence[str], names: Any, names_filter: Any) -> list[str]:
    """The hook names a run_with_cache call asks for: saelab's `names` (a name or names) or TransformerLens's
    `names_filter` (a name, names or a predicate over `available`); neither means every available name."""
    if names is not None and names_filter is not None:
        raise ValueError("give names or names_filter, not both")
    chosen = names if names is not None else names_filter
    if chosen is None:
        return list(available)
    if isinstance(chosen, str):
        return [chosen]
    if callable(chosen):
        return [n for n in available if chosen(n)]
    return list(chosen)


def hook_pairs(
    available: Sequence[str], hooks: Mapping[str, Callable] | None, fwd_hooks: Sequence
) -> list[tuple[str, Callable]]:
    """[(name, fn)] from saelab's {name: fn} and TransformerLens's [(name or predicate, fn)], predicates
    expanded over `available`; names are the caller's to check."""
    pairs = list((hooks or {}).items())
    for name, fn in fwd_hooks:
        pairs += [(n, fn) for n in available if name(n)] if callable(name) else [(name, fn)]
    for name, fn in pairs:
        if not callable(fn):
            raise TypeError(f"the hook for {name} is {type(fn).__name__}, not a function of the activation")
    return pairs
