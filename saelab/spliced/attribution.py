"""Prompt-level attribution: which SAE latents drive the logit of a target token at one position.

Three numbers per (position, latent), each a change of the target logit at the target position:
- `gradient`: activation x d(logit)/d(activation) through the whole model, linearised at the clean run
  (attribution patching, Syed et al. 2023; Marks et al. 2024 use it for SAE latents). The SAE runs with its
  error term, so the clean forward is exactly the model's.
- `direct`: only at the target position, the latent's decoder row through the final norm and the unembedding
  (the norm linearised at the clean final residual, the later blocks skipped): activation x
  (W_dec[i] . d(logit)/d(final residual)). This is "direct logit attribution" for a residual-stream SAE.
- `total`: the exact effect of ablating the latent (activation set to 0 at that position, error term kept),
  clean logit minus ablated logit, computed for the `n_total` candidates with the largest |gradient|.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models import Model
from saelab.models.transformer import unembed
from saelab.sae import LoadedSAE
from saelab.spliced.model import SplicedModel


class LatentEffect(NamedTuple):
    position: int
    latent: int
    activation: float
    gradient: float  # linearised effect on the target logit (activation x gradient)
    direct: float  # through the final norm and unembedding only; nan off the target position
    total: float  # clean minus ablated target logit; nan where not computed


class Attribution(NamedTuple):
    target: int  # token id
    position: int  # where its logit is read
    logit: float  # the clean target logit
    effects: list[LatentEffect]  # by |gradient|, largest first


def attribute(
    model: Model,
    sae: LoadedSAE,
    tokens: np.ndarray,
    target: int,
    position: int = -1,
    n_top: int = 20,
    n_total: int = 10,
) -> Attribution:
    """Attribute the logit of `target` at `position` of one prompt `tokens` (seq,) to the SAE's latents."""
    tokens = np.asarray(tokens, np.int32).reshape(1, -1)
    seq = tokens.shape[1]
    pos = position % seq
    hook = sae.metadata.get("hook_name")
    if not hook:
        raise ValueError("this SAE does not name its hook (no hook_name in its cfg.json)")
    if not 0 <= target < model.cfg.vocab_size:
        raise ValueError(f"target token id {target} is outside the vocabulary (size {model.cfg.vocab_size})")
    spliced = SplicedModel(model, [sae], use_error_term=True)
    acts_name = f"{hook}.hook_sae_acts_post"
    toks = jnp.asarray(tokens)
    fns = _compiled(spliced, acts_name, pos, target)
    logit, acts, grad, final = fns.clean(model.params, spliced.sae_params, toks)
    acts, grad = np.asarray(acts[0]), np.asarray(grad[0])  # (seq, d_sae)
    linear = acts * grad
    direct_row = np.full(acts.shape[1], np.nan)
    if hook.endswith(("hook_resid_post", "hook_resid_pre")):
        g_final = np.asarray(fns.unembed_grad(model.params, final))  # (d_model,)
        direct_row = acts[pos] * (np.asarray(sae.params.W_dec) @ g_final)
    flat = np.argsort(-np.abs(linear), axis=None, kind="stable")[:n_top]
    cand = [(int(i // acts.shape[1]), int(i % acts.shape[1])) for i in flat]
    cand = [(p, i) for p, i in cand if acts[p, i] != 0]
    totals = {}
    if cand[:n_total]:
        ps = jnp.asarray([p for p, _ in cand[:n_total]])
        ls = jnp.asarray([i for _, i in cand[:n_total]])
        ablated = np.asarray(fns.ablated(model.params, spliced.sae_params, toks, ps, ls))
        totals = {c: float(logit) - float(a) for c, a in zip(cand[:n_total], ablated, strict=True)}
    effects = [
        LatentEffect(
            p,
            i,
            float(acts[p, i]),
            float(linear[p, i]),
            float(direct_row[i]) if p == pos else float("nan"),
            totals.get((p, i), float("nan")),
        )
        for p, i in cand
    ]
    return Attribution(int(target), pos, float(logit), effects)


class _Fns(NamedTuple):
    clean: object
    unembed_grad: object
    ablated: object


def _compiled(spliced: SplicedModel, acts_name: str, pos: int, target: int) -> _Fns:
    cfg = spliced.model.cfg
    final_name = f"blocks.{cfg.n_layers - 1}.hook_resid_post"

    def target_logit(params, sae_params, toks, delta):
        logits, cache = spliced.forward(params, sae_params, toks, hooks={acts_name: lambda a: a + delta})
        return logits[0, pos, target], cache

    def clean(params, sae_params, toks):
        _, cache = spliced.forward(params, sae_params, toks, hooks={}, cache=(acts_name, final_name))
        acts = cache[acts_name]
        grad, _ = jax.grad(target_logit, argnums=3, has_aux=True)(params, sae_params, toks, jnp.zeros_like(acts))
        logit, _ = target_logit(params, sae_params, toks, jnp.zeros_like(acts))
        return logit, acts, grad, cache[final_name][0, pos]

    def unembed_grad(params, x_final):  # d(target logit)/d(final residual) at one position
        return jax.grad(lambda x: unembed(params, cfg, x[None, None])[0, 0, target])(x_final)

    def ablated(params, sae_params, toks, ps, ls):
        def one(p, i):
            kill = lambda a: a.at[0, p, i].set(0.0)
            logits, _ = spliced.forward(params, sae_params, toks, hooks={acts_name: kill})
            return logits[0, pos, target]

        return jax.lax.map(lambda pi: one(*pi), (ps, ls))

    return _Fns(jax.jit(clean), jax.jit(unembed_grad), jax.jit(ablated))
