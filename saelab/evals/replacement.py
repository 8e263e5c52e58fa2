"""The replacement model: every MLP of the model replaced at once by the transcoders trained to imitate it.

Circuit tracing (Ameisen et al. 2025, "Circuit Tracing") builds attribution graphs through a replacement model in
which each MLP output (`blocks.L.hook_mlp_out`) is written by a transcoder reading that MLP's input
(`blocks.L.ln2.hook_normalized`): a set of per-layer transcoders (PLTs) or one cross-layer transcoder. How far
the replacement model's next-token predictions are from the clean model's says whether a graph built on it
can be trusted, so the eval runs four forwards per batch in one jit:

- clean, caching every replaced MLP's input and output (the per-layer reconstruction metrics compare each
  layer's output with the MLP's, from the clean inputs);
- the replacement model: each layer's transcoder reads the input of *this* forward (so errors compound);
- the replacement model with error terms: each layer adds its error on the clean forward, `mlp_out - output`,
  a constant per position (the paper's error nodes), so this forward equals the clean one;
- every replaced MLP zero-ablated, the baseline of CE loss recovered.

As in the single-SAE splice, position 0 (BOS) keeps the model's own MLP output. The replacing object is a
`Replacement`: per layer, a step that reads the layer's input rows and a carry (what earlier layers left for
later ones: nothing for PLTs; a cross-layer transcoder's codes of the layers below) and returns the output
rows and the codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from saelab.evals.metrics import batch_sums
from saelab.evals.splice import ce_kl_sums, replace_after_bos
from saelab.evals.transcoder import check_hook_order
from saelab.models import HookContext, forward
from saelab.models.config import ModelConfig
from saelab.sae import LoadedSAE, SAEConfig, clt, encode
from saelab.sae.clt import CLTConfig, CLTParams
from saelab.sae.registry import forward as transcode

# (params, layer index, carry, x (n, d_in)) -> (y_hat (n, d_out), codes (n, d_sae), carry)
Step = Callable[[Any, int, Any, jax.Array], tuple[jax.Array, jax.Array, Any]]
VARIANTS = ("replacement", "errors", "zero")


class Replacement(NamedTuple):
    """What replaces the MLPs: the hooks each layer reads and writes, in forward order, and its step."""

    hooks_in: tuple[str, ...]  # e.g. blocks.L.ln2.hook_normalized, one per replaced layer
    hooks_out: tuple[str, ...]  # e.g. blocks.L.hook_mlp_out
    params: Any  # the step's parameters (a pytree)
    step: Step
    carry: Any = None  # what the first layer's step starts from


class ReplacementSums(NamedTuple):
    """Summed CE and KL(clean || variant) over a batch's predicted positions."""

    n: jax.Array
    ce_clean: jax.Array
    ce_replacement: jax.Array  # the replacement model
    ce_errors: jax.Array  # the replacement model with error terms
    ce_zero: jax.Array  # every replaced MLP zero-ablated
    kl_replacement: jax.Array
    kl_errors: jax.Array
    kl_zero: jax.Array


def plt_replacement(saes: Sequence[LoadedSAE]) -> Replacement:
    """The replacement of saelab's per-layer transcoders: each reads its `hook_name` and writes `hook_name_out`
    (SAELens' transcoder metadata)."""
    hooks = []
    for sae in saes:
        if not sae.cfg.is_transcoder or not sae.metadata.get("hook_name_out"):
            raise ValueError(f"{sae.metadata.get('hook_name')}: a replacement model is made of transcoders")
        hooks.append((sae.metadata["hook_name"], sae.metadata["hook_name_out"]))
    return transcoder_set_replacement(hooks, [(s.params, s.cfg) for s in saes])


def transcoder_set_replacement(hooks: Sequence[tuple[str, str]], layers: Sequence[tuple[Any, SAEConfig]]):
    """The replacement of per-layer transcoders ((params, config) each) reading and writing `hooks` ((in, out)
    each), independently of each other: no carry."""
    for h_in, h_out in hooks:
        check_hook_order(h_in, h_out)
    if len({h for _, h in hooks}) < len(hooks):
        raise ValueError(f"two transcoders write the same hook: {[h for _, h in hooks]}")
    cfgs = [cfg for _, cfg in layers]

    def step(params, i, carry, x):
        return transcode(params[i], x, cfgs[i]), encode(params[i], x, cfgs[i]), carry

    hooks_in, hooks_out = zip(*hooks, strict=True)
    return Replacement(hooks_in, hooks_out, tuple(p for p, _ in layers), step)


def clt_replacement(params: CLTParams, cfg: CLTConfig, hooks: Sequence[tuple[str, str]]) -> Replacement:
    """The replacement of a cross-layer transcoder reading and writing `hooks` ((in, out) per layer): layer i
    encodes its own input (saelab.sae.clt's encode of that layer alone) and writes
    y_i = sum_{s <= i} codes_s @ W_dec[s][:, i - s] + b_dec[i]; the carry holds the codes of the layers below."""
    if len(hooks) != cfg.n_layers:
        raise ValueError(f"a CLT of {cfg.n_layers} layers replaces {cfg.n_layers} MLPs, got {len(hooks)} hook pairs")
    one = cfg.model_copy(update={"n_layers": 1})

    def step(p: CLTParams, i, carry, x):  # x (n, d_in); carry: codes (n, d_sae) of layers 0..i-1
        theta = None if p.threshold is None else p.threshold[i : i + 1]
        layer = CLTParams(p.W_enc[i : i + 1], p.b_enc[i : i + 1], (p.W_dec[i][:, :1],), p.b_dec[i : i + 1], theta)
        codes = clt.encode(layer, x[:, None], one)[:, 0]  # (n, d_sae)
        carry = (*carry, codes)
        y = p.b_dec[i] + sum(c @ p.W_dec[s][:, i - s] for s, c in enumerate(carry))  # (n, d_out)
        return y, codes, carry

    hooks_in, hooks_out = zip(*hooks, strict=True)
    return Replacement(hooks_in, hooks_out, params, step, carry=())


def make_replacement_fn(model_cfg: ModelConfig, rep: Replacement):
    """Jitted (model_params, replacement params, tokens (b, t)) -> (ReplacementSums, per-layer Sums of the
    outputs from the clean inputs at positions 1..)."""

    def rows(a):  # (b, t, d) -> (b * (t - 1), d) float32: positions 1..
        return a[:, 1:].reshape(-1, a.shape[-1]).astype(jnp.float32)

    def log_probs(model_params, tokens, hooks, cache=()):
        out = forward(model_params, model_cfg, tokens, None, HookContext(hooks=hooks, cache=cache))
        return jax.nn.log_softmax(out.logits[:, :-1]), out.cache

    def on_clean(params, cache):  # each layer's output and codes from the clean inputs; the error terms
        carry, recon, errors = rep.carry, [], []
        for i, (h_in, h_out) in enumerate(zip(rep.hooks_in, rep.hooks_out, strict=True)):
            y_hat, codes, carry = rep.step(params, i, carry, rows(cache[h_in]))
            y = rows(cache[h_out])  # (n, d_out)
            recon.append(batch_sums(y, y_hat, codes))
            errors.append(y - y_hat)
        return tuple(recon), errors

    def spliced(params, errors):  # the hooks of the replacement model (with error terms when given)
        seen, state = {}, {"carry": rep.carry}

        def capture(i):
            def fn(x):
                seen[i] = x
                return x

            return fn

        def write(i):
            def fn(y):  # (b, t, d_out) at the output hook
                b, t, _ = y.shape
                y_hat, _, state["carry"] = rep.step(params, i, state["carry"], rows(seen[i]))
                y_hat = y_hat if errors is None else y_hat + errors[i]
                return y.at[:, 1:].set(y_hat.reshape(b, t - 1, -1).astype(y.dtype))

            return fn

        hooks = {h: capture(i) for i, h in enumerate(rep.hooks_in)}
        return hooks | {h: write(i) for i, h in enumerate(rep.hooks_out)}

    def run(model_params, params, tokens):
        clean, cache = log_probs(model_params, tokens, {}, (*rep.hooks_in, *rep.hooks_out))
        recon, errors = on_clean(params, cache)
        zero = {h: replace_after_bos(jnp.zeros_like) for h in rep.hooks_out}
        lps = {
            "replacement": log_probs(model_params, tokens, spliced(params, None))[0],
            "errors": log_probs(model_params, tokens, spliced(params, errors))[0],
            "zero": log_probs(model_params, tokens, zero)[0],
        }
        n = jnp.asarray(tokens[:, 1:].size, jnp.float32)
        return ReplacementSums(n=n, **ce_kl_sums(tokens, clean, lps)), recon

    return jax.jit(run)


def finish(s: ReplacementSums) -> dict[str, float]:
    """Mean CE of each variant, CE loss recovered against zero-ablating every replaced MLP, mean KL to clean."""
    n = float(s.n)
    mean = lambda name: float(getattr(s, name)) / n
    ce = {k: mean(f"ce_{k}") for k in ("clean", *VARIANTS)}
    out = {"ce_loss_clean": ce["clean"], "ce_loss_zero_ablation": ce["zero"], "kl_div_zero_ablation": mean("kl_zero")}
    for variant, suffix in (("replacement", ""), ("errors", "_with_errors")):
        out[f"ce_loss_replacement{suffix}"] = ce[variant]
        out[f"ce_loss_recovered{suffix}"] = (ce["zero"] - ce[variant]) / (ce["zero"] - ce["clean"])
        out[f"kl_div{suffix}"] = mean(f"kl_{variant}")  # mean KL(clean || variant) per predicted position
    return out
