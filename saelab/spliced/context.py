"""SAEs spliced into a forward pass, with their latents and reconstructions as hook points of their own.

At an attached SAE's hook point `H` the context runs, in order (SAELens's names):

    H.hook_sae_input       the activation entering the SAE                       (batch, seq, d_in)
    H.hook_sae_acts_post   the latents (edit them here: ablate, clamp, patch)    (batch, seq, d_sae)
    H.hook_sae_recons      decode(latents)                                        (batch, seq, d_in)
    H.hook_sae_error       input - decode(encode(input)), with the error term     (batch, seq, d_in)
    H.hook_sae_output      what continues into the model                          (batch, seq, d_in)

Without the error term the model continues with the reconstruction. With it, it continues with
`input + (decode(edited latents) - decode(latents))`: exactly the clean activation when nothing is edited
(so logits equal the clean model's to the bit), and the clean activation plus the edit's effect otherwise.
Position 0 (BOS, which SAEs are not trained on: its norm is ~100x the median) keeps its clean activation, as
in the eval's splice; pass `splice_bos=True` to replace it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from saelab.models.hook_views import sae_input, with_sae_output
from saelab.models.hooks import HookContext, HookFn
from saelab.sae import SAEConfig, SAEParams, decode, encode

SAE_HOOKS = ("hook_sae_input", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_error", "hook_sae_output")


class Attached(NamedTuple):
    """How one SAE sits in the model (static: hashable, part of the compiled program's identity)."""

    hook: str
    cfg: SAEConfig
    use_error_term: bool = False
    splice_bos: bool = False
    head_index: int | None = None  # at attn.hook_z: the one head the SAE reads and replaces


def sae_hook_names(hook: str, use_error_term: bool) -> list[str]:
    """The hook points an SAE attached at `hook` adds."""
    return [f"{hook}.{s}" for s in SAE_HOOKS if use_error_term or s != "hook_sae_error"]


class SplicedContext(HookContext):
    """A HookContext that also runs the attached SAEs at their hook points (see the module docstring)."""

    def __init__(
        self,
        attached: tuple[Attached, ...],
        sae_params: Mapping[str, SAEParams],
        hooks: Mapping[str, HookFn] | None = None,
        cache: tuple[str, ...] = (),
    ) -> None:
        super().__init__(hooks=hooks, cache=cache)
        self.attached = {a.hook: a for a in attached}
        self.sae_params = sae_params

    def __call__(self, name: str, x: jax.Array) -> jax.Array:
        x = super().__call__(name, x)
        att = self.attached.get(name)
        return x if att is None else self._splice(att, self.sae_params[name], x)

    def _splice(self, att: Attached, params: SAEParams, x: jax.Array) -> jax.Array:
        h = att.hook
        shape = x.shape  # (batch, seq, d_in), or (batch, seq, heads, d_head) at attn.hook_z
        xs = sae_input(x, att.head_index).astype(jnp.float32)  # (batch, seq, d_in)
        if xs.shape[-1] != att.cfg.d_in:
            head = "" if att.head_index is None else f" (head {att.head_index})"
            raise ValueError(f"SAE at {h} has d_in={att.cfg.d_in} but the activation there is {shape}{head}")
        inp = super().__call__(f"{h}.hook_sae_input", xs)
        flat = inp.reshape(-1, xs.shape[-1])  # (batch * seq, d_in)
        clean_acts = encode(params, flat, att.cfg)  # (batch * seq, d_sae)
        clean_recons = decode(params, clean_acts).reshape(xs.shape)
        acts_name = f"{h}.hook_sae_acts_post"
        acts = super().__call__(acts_name, clean_acts.reshape(*xs.shape[:2], -1))
        recons = (
            decode(params, acts.reshape(flat.shape[0], -1)).reshape(xs.shape)
            if acts_name in self.hooks
            else clean_recons
        )
        recons = super().__call__(f"{h}.hook_sae_recons", recons)
        if att.use_error_term:
            err_name = f"{h}.hook_sae_error"
            error = super().__call__(err_name, inp - clean_recons)
            # input + (edited - clean reconstruction) is exactly the input when nothing is edited
            out = recons + error if err_name in self.hooks else inp + (recons - clean_recons)
        else:
            out = recons
        out = super().__call__(f"{h}.hook_sae_output", out)
        if not att.splice_bos and self.positions is not None:
            out = jnp.where((self.positions == 0)[..., None], xs, out)
        return with_sae_output(x, out, att.head_index)
