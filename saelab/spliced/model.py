"""`SplicedModel`: a model with SAEs attached at their hook points, in the spirit of SAELens's
`HookedSAETransformer.run_with_saes` / `add_sae`, on saelab's pure-function hooks (everything jits).

    spliced = SplicedModel(Model.load("smollm2-135m"), [load_sae("checkpoints/demo")], use_error_term=True)
    logits, cache = spliced.run_with_cache(tokens, ["blocks.6.hook_resid_post.hook_sae_acts_post"])
    ablated = spliced.run_with_hooks(tokens, {"blocks.6.hook_resid_post.hook_sae_acts_post": kill_42})
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from saelab.models import Model, forward
from saelab.models.compile_options import forward_options
from saelab.models.config import ModelConfig
from saelab.models.generate import DEFAULT_NEW_TOKENS, Generation, generate_model, generate_text
from saelab.models.hook_args import FwdHooks, RunsWithHooks, hook_pairs, pick_names
from saelab.models.hook_fns import LiftedHooks, call_lifted, lift_hooks
from saelab.models.hook_views import check_head_index
from saelab.models.hooks import HookFn, validate_hook_names
from saelab.models.inputs import resolve
from saelab.models.weights import ModelWeights
from saelab.sae import LoadedSAE, SAEParams
from saelab.spliced.context import Attached, SplicedContext, sae_hook_names


class SplicedModel(RunsWithHooks):
    """A `Model` plus SAEs spliced in at their hooks (one SAE per hook point)."""

    def __init__(
        self,
        model: Model,
        saes: Sequence[LoadedSAE] | Mapping[str, LoadedSAE],
        use_error_term: bool = False,
        splice_bos: bool = False,
    ) -> None:
        items = saes.items() if isinstance(saes, Mapping) else [(_hook_of(s), s) for s in saes]
        self.model = model
        self.attached: tuple[Attached, ...] = ()
        self.sae_params: dict[str, SAEParams] = {}
        for hook, sae in items:
            if hook in self.sae_params:
                raise ValueError(f"two SAEs at {hook}; attach one SAE per hook point")
            validate_hook_names([hook], model.cfg.n_layers)
            head = sae.metadata.get("hook_head_index")
            head = None if head is None else int(head)
            check_head_index(model.cfg, hook, head)
            self.attached += (Attached(hook, sae.cfg, use_error_term, splice_bos, head),)
            self.sae_params[hook] = sae.params

    def hook_names(self) -> list[str]:
        """The model's hook points and every attached SAE's own."""
        extra = [n for a in self.attached for n in sae_hook_names(a.hook, a.use_error_term)]
        return self.model.hook_names() + extra

    def run_with_cache(
        self,
        input: Any,
        names: str | Iterable[str] | None = None,
        pad_mask: Any = None,
        hooks: Mapping[str, Callable] | None = None,
        *,
        names_filter: str | Iterable[str] | Callable[[str], bool] | None = None,
        fwd_hooks: FwdHooks = (),
        prepend_bos: bool = True,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(logits (batch, seq, vocab), {name: activation}) with the SAEs spliced in and `hooks` applied.
        Inputs, names and hooks as `Model.run_with_cache` / `Model.run_with_hooks` take them (text, lists of
        text and `to_tokens` results carry their padding mask; no names caches every hook, SAE ones included)."""
        toks = resolve(self.model, input, pad_mask, prepend_bos)
        names = tuple(sorted(set(pick_names(self.hook_names(), names, names_filter))))
        self._check(names)
        lifted, data = lift_hooks(self._hook_pairs(hooks, fwd_hooks))

        def run(lifted: LiftedHooks, data: tuple):
            fn = _jitted(self.model.cfg, self.attached, lifted, names)
            return fn(self.model.params, self.sae_params, jnp.asarray(toks.tokens), toks.pad_mask, data)

        return call_lifted(run, lifted, data)

    def _logits_with_hooks(
        self, input: Any, pad_mask: Any, hooks: Mapping[str, Callable] | None, fwd_hooks: FwdHooks, prepend_bos: bool
    ) -> jax.Array:
        return self.run_with_cache(input, (), pad_mask, hooks, fwd_hooks=fwd_hooks, prepend_bos=prepend_bos)[0]

    def forward(
        self,
        params: ModelWeights,
        sae_params: Mapping[str, SAEParams],
        tokens: jax.Array,
        pad_mask: jax.Array | None = None,
        hooks: Mapping[str, HookFn] | None = None,
        cache: tuple[str, ...] = (),
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The pure, traceable forward (call it inside your own jit/vmap/grad): logits and the cache."""
        ctx = SplicedContext(self.attached, sae_params, hooks, cache)
        out = forward(params, self.model.cfg, tokens, pad_mask, ctx)
        return out.logits, out.cache

    def generate(
        self,
        prompt: str | Sequence[str],
        max_new_tokens: int = DEFAULT_NEW_TOKENS,
        *,
        hooks: Mapping[str, Callable] | None = None,
        prepend_bos: bool = True,
        stop: Sequence[int] | None = None,
        **sampling: Any,
    ) -> str | list[str]:
        """Continuations with the SAEs (and `hooks`) in the loop at every step; `sampling` takes
        temperature, top_k, top_p and seed as `Model.generate` does."""
        self._check(hooks or {})
        lifted, data = lift_hooks(hooks)

        def run(lifted: LiftedHooks, data: tuple):
            return generate_text(
                self.model,
                prompt,
                max_new_tokens,
                prepend_bos=prepend_bos,
                stop=stop,
                context=_Context(self.attached, lifted),
                context_args=(self.sae_params, data),
                **sampling,
            )

        return call_lifted(run, lifted, data)

    def generate_tokens(
        self,
        tokens: Any,
        pad_mask: Any,
        max_new_tokens: int,
        *,
        hooks: Mapping[str, Callable] | None = None,
        stop_ids: tuple[int, ...] = (),
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
    ) -> Generation:
        """Token-level generation (left-padded `tokens` (batch, n) and `pad_mask`) with the SAEs in the loop."""
        self._check(hooks or {})
        lifted, data = lift_hooks(hooks)

        def run(lifted: LiftedHooks, data: tuple) -> Generation:
            return generate_model(
                self.model,
                tokens,
                pad_mask,
                max_new_tokens,
                stop_ids=stop_ids,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                seed=seed,
                context=_Context(self.attached, lifted),
                context_args=(self.sae_params, data),
            )

        return call_lifted(run, lifted, data)

    def _hook_pairs(self, hooks: Mapping[str, Callable] | None, fwd_hooks: Sequence) -> list[tuple[str, Callable]]:
        pairs = hook_pairs(self.hook_names(), hooks, fwd_hooks)
        self._check([n for n, _ in pairs])
        return pairs

    def _check(self, names: Iterable[str]) -> None:
        valid = set(self.hook_names())
        bad = sorted(n for n in names if n not in valid)
        if bad:
            sae = ", ".join(sorted(n for n in valid if ".hook_sae_" in n)) or "none (no SAE attached)"
            raise ValueError(f"unknown hook point(s) {bad}; model hooks are blocks.L.<point>, SAE hooks: {sae}")


class _Context(NamedTuple):
    """Builds the spliced context inside a jitted loop; hashed by value so equal hooks share a compile."""

    attached: tuple[Attached, ...]
    hooks: LiftedHooks

    def __call__(self, args: tuple[Mapping[str, SAEParams], tuple]) -> SplicedContext:
        sae_params, data = args
        return SplicedContext(self.attached, sae_params, self.hooks.bind(data))


def _hook_of(sae: LoadedSAE) -> str:
    hook = sae.metadata.get("hook_name")
    if not hook:
        raise ValueError("this SAE does not name its hook (no hook_name in its cfg.json); pass {hook: sae}")
    return hook


@functools.lru_cache(maxsize=64)
def _jitted(cfg: ModelConfig, attached: tuple[Attached, ...], hooks: LiftedHooks, names: tuple[str, ...]):
    def run(params, sae_params, tokens, pad_mask, data):
        ctx = SplicedContext(attached, sae_params, hooks.bind(data), names)
        out = forward(params, cfg, tokens, pad_mask, ctx)
        return out.logits, out.cache

    return jax.jit(run, compiler_options=forward_options())  # as the plain model's forwards: same dot library
