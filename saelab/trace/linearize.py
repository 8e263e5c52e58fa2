"""The local replacement model of one prompt (Ameisen et al. 2025, "Circuit Tracing", §2.3; circuit-tracer's
`replacement_model_transformerlens.py`): the clean forward records the attention patterns and the norm scales,
which are then frozen, and every MLP is replaced by its transcoder plus an error term, through which only the
transcoder's skip passes a gradient. What is left is linear: each layer's MLP input and the final norm's
output are linear maps of the token embeddings and of what each layer adds at its MLP output (the features'
decoder vectors, the errors), and attribution reads it backwards (`saelab.trace.attribute`).

One clean forward (`record`) gives the frozen state and the clean activations; `layer_forward` is one block
of the frozen model, `linear_forward` the whole of it. Pre-norm sequential blocks only (Llama, Qwen,
SmolLM2, GPT-2 and the like): the norms read the residual stream and the MLP reads the attention's output.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.models.model import Model
from saelab.models.weights import LayerWeights, ModelWeights, Norm


class Frozen(NamedTuple):
    """The clean run's nonlinear state, held fixed: attention patterns and the norms' scales."""

    pattern: jax.Array  # (L, n_heads, pos, pos) softmax probabilities [head, query, key]
    ln1: jax.Array  # (L, pos) scale of the attention input's norm: 1 / rms (or 1 / std for LayerNorm)
    ln2: jax.Array  # (L, pos) scale of the MLP input's norm
    ln_final: jax.Array  # (pos,) scale of the final norm


class CleanRun(NamedTuple):
    """What the clean forward of one prompt leaves for the attribution."""

    frozen: Frozen
    embed: jax.Array  # (pos, d_model) hook_embed: what each token node writes
    mlp_in: jax.Array  # (L, pos, d_model) blocks.L.ln2.hook_normalized, the transcoders' input
    mlp_out: jax.Array  # (L, pos, d_model) blocks.L.hook_mlp_out
    final: jax.Array  # (pos, d_model) ln_final.hook_normalized, what the unembedding reads
    logits: jax.Array  # (vocab,) float32 at the last position


def check_model(cfg: ModelConfig) -> None:
    """ValueError unless the model's blocks are pre-norm and sequential (what the linearisation covers)."""
    if cfg.norm_placement != "pre" or cfg.parallel_residual:
        raise ValueError(
            "saelab trace linearises pre-norm sequential blocks (Llama, Qwen, SmolLM2, GPT-2); "
            f"{cfg.name or cfg.family} has norm_placement={cfg.norm_placement!r}, "
            f"parallel_residual={cfg.parallel_residual}"
        )


def record(model: Model, tokens: jax.Array) -> CleanRun:
    """The clean forward of `tokens` (pos,) int: frozen patterns and scales, and the activations the graph's
    nodes and targets read."""
    check_model(model.cfg)
    n = model.cfg.n_layers
    per_layer = ("hook_resid_pre", "hook_resid_mid", "attn.hook_pattern", "ln2.hook_normalized", "hook_mlp_out")
    names = [f"blocks.{l}.{h}" for l in range(n) for h in per_layer]
    names += ["hook_embed", "ln_final.hook_normalized", f"blocks.{n - 1}.hook_resid_post"]
    ids = np.asarray(tokens, np.int32)[None]  # (1, pos); every position real, whatever its id
    logits, cache = model.run_with_cache(ids, names, pad_mask=np.ones_like(ids))
    layer = lambda h: jnp.stack([cache[f"blocks.{l}.{h}"][0] for l in range(n)]).astype(jnp.float32)
    frozen = Frozen(
        pattern=layer("attn.hook_pattern"),
        ln1=norm_scale(layer("hook_resid_pre"), model.cfg),
        ln2=norm_scale(layer("hook_resid_mid"), model.cfg),
        ln_final=norm_scale(cache[f"blocks.{n - 1}.hook_resid_post"][0].astype(jnp.float32), model.cfg),
    )
    final = cache["ln_final.hook_normalized"][0].astype(jnp.float32)
    embed = cache["hook_embed"][0].astype(jnp.float32)
    return CleanRun(frozen, embed, layer("ln2.hook_normalized"), layer("hook_mlp_out"), final, logits[0, -1])


def norm_scale(x: jax.Array, cfg: ModelConfig) -> jax.Array:
    """The factor a norm multiplies its (centred, for LayerNorm) input by, (..., pos) float32, as
    `saelab.models.layers` computes it."""
    x = x.astype(jnp.float32)
    if cfg.norm == "layer":
        x = x - x.mean(-1, keepdims=True)
    return jax.lax.rsqrt(jnp.mean(x * x, axis=-1) + cfg.norm_eps)


def frozen_norm(x: jax.Array, scale: jax.Array, n: Norm, cfg: ModelConfig) -> jax.Array:
    """The norm of x (pos, d) with its scale (pos,) frozen: linear in x (a LayerNorm's bias, a constant, left
    out)."""
    if cfg.norm == "layer":
        x = x - x.mean(-1, keepdims=True)
    return x * scale[:, None] * (cfg.norm_offset + n.w.astype(jnp.float32))


def layer_forward(
    p: LayerWeights,
    cfg: ModelConfig,
    pattern: jax.Array,
    ln1: jax.Array,
    ln2: jax.Array,
    skip: jax.Array | None,
    resid: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """One frozen block on the residual stream entering it (pos, d_model): (the MLP's input, the stream
    leaving it without the MLP output's constant part). Attention moves values with the frozen pattern; the
    MLP output passes on only the transcoder's skip `x @ W_skip`; biases, constants, are left out."""
    h = frozen_norm(resid, ln1, p.ln1, cfg)
    v = jnp.einsum("pm,mkd->pkd", h, p.attn.W_V.astype(jnp.float32))  # (pos, kv_heads, d_head)
    v = jnp.repeat(v, cfg.n_heads // cfg.n_kv_heads, axis=1)  # query head i reads kv head i // group
    z = jnp.einsum("hqk,khd->qhd", pattern, v)  # (pos, heads, d_head)
    mid = resid + jnp.einsum("qhd,hdm->qm", z, p.attn.W_O.astype(jnp.float32))
    x = frozen_norm(mid, ln2, p.ln2, cfg)  # (pos, d_model) the MLP's input
    return x, mid if skip is None else mid + x @ skip


def linear_forward(
    params: ModelWeights,
    cfg: ModelConfig,
    frozen: Frozen,
    skip: jax.Array | None,
    embed: jax.Array,
    writes: jax.Array,
) -> jax.Array:
    """The frozen model from the embeddings (pos, d_model) and what each layer adds at its MLP output
    (L, pos, d_model): (L + 1, pos, d_model), each layer's MLP input and, last, the final norm's output."""
    resid, outs = embed, []
    for l, p in enumerate(params.layers):
        s = None if skip is None else skip[l]
        x, resid = layer_forward(p, cfg, frozen.pattern[l], frozen.ln1[l], frozen.ln2[l], s, resid)
        resid = resid + writes[l]
        outs.append(x)
    outs.append(frozen_norm(resid, frozen.ln_final, params.ln_final, cfg))
    return jnp.stack(outs)
