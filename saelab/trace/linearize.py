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
from saelab.models.layers import attention_mask
from saelab.models.model import Model
from saelab.models.weights import LayerWeights, ModelWeights, Norm


class Frozen(NamedTuple):
    """The clean run's nonlinear state, held fixed: attention patterns and the norms' scales. The patterns
    are held whole (`pattern`), or compactly as the clean run's queries and keys (`q`, `k`, after q/k norm
    and rotary), from which `layer_pattern` recomputes one layer's at a time: O(L pos d) instead of
    O(L heads pos^2), what a long prompt needs."""

    pattern: jax.Array | None  # (L, n_heads, pos, pos) softmax probabilities [head, query, key], or None
    ln1: jax.Array  # (L, pos) scale of the attention input's norm: 1 / rms (or 1 / std for LayerNorm)
    ln2: jax.Array  # (L, pos) scale of the MLP input's norm
    ln_final: jax.Array  # (pos,) scale of the final norm
    q: jax.Array | None = None  # (L, pos, n_heads, d_head) the queries the scores read, when pattern is None
    k: jax.Array | None = None  # (L, pos, n_kv_heads, d_head) the keys


class CleanRun(NamedTuple):
    """What the clean forward of one prompt leaves for the attribution."""

    frozen: Frozen
    embed: jax.Array  # (pos, d_model) hook_embed: what each token node writes
    mlp_in: jax.Array  # (L, pos, d_model) blocks.L.ln2.hook_normalized, the transcoders' input
    mlp_out: jax.Array  # (L, pos, d_model) blocks.L.hook_mlp_out
    final: jax.Array  # (pos, d_model) ln_final.hook_normalized, what the unembedding reads
    logits: jax.Array  # (vocab,) float32 at the last position


def check_model(cfg: ModelConfig, compact: bool = False) -> ModelConfig:
    """`cfg`, or a ValueError unless the model's blocks are pre-norm and sequential (what the linearisation
    covers); `compact` (patterns recomputed from queries and keys) also needs the keys `layer_pattern` reads:
    no q/k norm without rotary (hook_q/hook_k are before the norm)."""
    if cfg.norm_placement != "pre" or cfg.parallel_residual:
        raise ValueError(
            "saelab trace linearises pre-norm sequential blocks (Llama, Qwen, SmolLM2, GPT-2); "
            f"{cfg.name or cfg.family} has norm_placement={cfg.norm_placement!r}, "
            f"parallel_residual={cfg.parallel_residual}"
        )
    if compact and cfg.qk_norm and cfg.positions != "rope":
        raise ValueError(f"{cfg.name or cfg.family}: compact patterns need post-norm queries (q/k norm with rotary)")
    return cfg


def layer_pattern(frozen: Frozen, layer: int, cfg: ModelConfig) -> jax.Array:
    """Layer `layer`'s frozen pattern (n_heads, pos, pos) float32: held, or recomputed from the clean run's
    queries and keys as `saelab.models.layers.attend` computes it (scale, soft-cap, causal and sliding-window
    mask). Positions past the prompt (padding) are never attended to from the prompt's own."""
    if frozen.pattern is not None:
        return frozen.pattern[layer]
    q, k = frozen.q[layer], frozen.k[layer]  # (pos, H, d), (pos, Hkv, d)
    n = q.shape[0]
    positions = jnp.arange(n)[None]
    window = cfg.sliding_window if cfg.is_sliding(layer) else None
    mask = attention_mask(jnp.ones((1, n), jnp.int32), positions, window)[0]  # (1, q, k)
    scale = (cfg.query_pre_attn_scalar or cfg.d_head) ** -0.5
    qg = q.reshape(n, k.shape[1], -1, q.shape[-1])  # query head i reads kv head i // group
    logits = jnp.einsum("qkgd,tkd->kgqt", qg, k, preferred_element_type=jnp.float32) * scale
    if cfg.attn_logit_softcap is not None:
        logits = jnp.tanh(logits / cfg.attn_logit_softcap) * cfg.attn_logit_softcap
    logits = jnp.where(mask, logits.reshape(q.shape[1], n, n), jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(logits, axis=-1)


def record(model: Model, tokens: jax.Array, compact: bool = False) -> CleanRun:
    """The clean forward of `tokens` (pos,) int: frozen patterns and scales, and the activations the graph's
    nodes and targets read. `compact`: the patterns as the queries and keys they come from (`Frozen.q`,
    `Frozen.k`; `layer_pattern`), never all layers' patterns at once."""
    cfg = check_model(model.cfg, compact)
    n = cfg.n_layers
    qk = ("attn.hook_rot_q", "attn.hook_rot_k") if cfg.positions == "rope" else ("attn.hook_q", "attn.hook_k")
    per_layer = ("hook_resid_pre", "hook_resid_mid", "ln2.hook_normalized", "hook_mlp_out")
    per_layer += qk if compact else ("attn.hook_pattern",)
    names = [f"blocks.{l}.{h}" for l in range(n) for h in per_layer]
    names += ["hook_embed", "ln_final.hook_normalized", f"blocks.{n - 1}.hook_resid_post"]
    ids = np.asarray(tokens, np.int32)[None]  # (1, pos); every position real, whatever its id
    logits, cache = model.run_with_cache(ids, names, pad_mask=np.ones_like(ids))
    layer = lambda h: jnp.stack([cache.pop(f"blocks.{l}.{h}")[0].astype(jnp.float32) for l in range(n)])
    frozen = Frozen(
        pattern=None if compact else layer("attn.hook_pattern"),
        ln1=norm_scale(layer("hook_resid_pre"), cfg),
        ln2=norm_scale(layer("hook_resid_mid"), cfg),
        ln_final=norm_scale(cache[f"blocks.{n - 1}.hook_resid_post"][0].astype(jnp.float32), cfg),
        q=layer(qk[0]) if compact else None,
        k=layer(qk[1]) if compact else None,
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
        x, resid = layer_forward(p, cfg, layer_pattern(frozen, l, cfg), frozen.ln1[l], frozen.ln2[l], s, resid)
        resid = resid + writes[l]
        outs.append(x)
    outs.append(frozen_norm(resid, frozen.ln_final, params.ln_final, cfg))
    return jnp.stack(outs)
