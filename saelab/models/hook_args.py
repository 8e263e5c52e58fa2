"""Which hooks a call names, in saelab's form ({name: fn}, names) and TransformerLens's (`fwd_hooks` pairs with
predicates, `names_filter`, the `HookPoint` a two-argument hook receives)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from saelab.models.hooks import hook_layer

if TYPE_CHECKING:
    import jax

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


class RunsWithHooks(ABC):
    """TransformerLens's `run_with_hooks`, shared by `Model` and `SplicedModel` (which define `_logits_with_hooks`)."""

    def run_with_hooks(
        self,
        input: Any,
        hooks: Mapping[str, Callable] | None = None,
        pad_mask: Any = None,
        *,
        fwd_hooks: FwdHooks = (),
        prepend_bos: bool = True,
    ) -> jax.Array:
        """Logits with `hooks` ({name: fn}) or TransformerLens's `fwd_hooks` ([(name or predicate, fn)])
        applied during the forward (a SplicedModel's with its SAEs spliced in; hooks may name SAE hook points).
        A hook is `fn(act)` or `fn(act, hook)` (hook.name says where it runs) and returns the edited activation,
        or None to leave it unchanged; it must be a pure JAX function.

        Traceable inside jit/vmap. Outside a trace, the numbers and arrays a hook function reads (from its
        closure, defaults or globals) are passed to the compiled program as data, so a loop of lambdas that
        differ only in such values compiles once (`saelab.models.hook_fns`)."""
        return self._logits_with_hooks(input, pad_mask, hooks, fwd_hooks, prepend_bos)

    @abstractmethod
    def _logits_with_hooks(
        self, input: Any, pad_mask: Any, hooks: Mapping[str, Callable] | None, fwd_hooks: FwdHooks, prepend_bos: bool
    ) -> jax.Array:
        """The logits of `input` with the hook pairs of `hooks` and `fwd_hooks` applied."""
