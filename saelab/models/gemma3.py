"""Gemma 3 (text-only, `Gemma3ForCausalLM`, model_type `gemma3_text`): Gemma 2's block (pre- and
post-norms around attention and MLP, (1 + w) RMSNorm, embeddings scaled by sqrt(d_model), GeGLU, the query
pre-attention scalar) with an RMSNorm over d_head on every query and key head before rotary, and local /
global layers that differ in more than the mask: sliding layers rotate with their own base (10k), global
ones with `rope_theta` (1M, linearly scaled on the larger models). Soft-capping only where configured.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models import gemma2
from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext
from saelab.models.kv_cache import keys_and_mask
from saelab.models.layers import apply_rope, attend, gelu_tanh, project_heads, rms_norm, rope_inv_freq

Getter = Callable[[str], np.ndarray]

embed = gemma2.embed
unembed = gemma2.unembed


def params_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> dict:
    """Hugging Face Gemma3ForCausalLM tensor names -> saelab params: Gemma 2's plus q/k norms (d_head,),
    all norm weights stored as w and used as 1 + w."""
    params = gemma2.params_from_hf(get, cfg, dtype)
    for i, layer in enumerate(params["layers"]):
        p = f"model.layers.{i}.self_attn."
        layer["q_norm"] = jnp.asarray(get(p + "q_norm.weight"), dtype=dtype)
        layer["k_norm"] = jnp.asarray(get(p + "k_norm.weight"), dtype=dtype)
    return params


def _norm(x: jax.Array, w: jax.Array, cfg: ModelConfig) -> jax.Array:
    return rms_norm(x, w, cfg.norm_eps, offset=1.0)


def block(
    p: dict,
    cfg: ModelConfig,
    layer: int,
    x: jax.Array,
    positions: jax.Array,
    pad_mask: jax.Array,
    ctx: HookContext,
) -> jax.Array:
    pre = f"blocks.{layer}."
    x = ctx(pre + "hook_resid_pre", x)  # (batch, seq, d_model)
    h = _norm(x, p["ln1"], cfg)
    q = _norm(jnp.einsum("bsm,mhd->bshd", h, p["W_Q"]), p["q_norm"], cfg)  # (batch, seq, heads, d_head)
    k = _norm(jnp.einsum("bsm,mhd->bshd", h, p["W_K"]), p["k_norm"], cfg)  # (batch, seq, kv_heads, d_head)
    v = jnp.einsum("bsm,mhd->bshd", h, p["W_V"])
    sliding = cfg.is_sliding(layer)
    inv_freq = rope_inv_freq(cfg, local=sliding)
    q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
    k, v, mask = keys_and_mask(ctx, layer, k, v, pad_mask, positions, cfg.sliding_window if sliding else None)
    scale = cfg.query_pre_attn_scalar**-0.5
    z = ctx(pre + "attn.hook_z", attend(q, k, v, mask, scale, cfg.attn_logit_softcap))
    # hook_attn_out is what enters the residual stream: after the post-attention norm.
    attn_out = ctx(pre + "hook_attn_out", _norm(project_heads(z, p["W_O"], None, ctx, pre), p["ln1_post"], cfg))
    x = ctx(pre + "hook_resid_mid", x + attn_out)
    h = ctx(pre + "ln2.hook_normalized", _norm(x, p["ln2"], cfg))  # the MLP input
    act = ctx(pre + "mlp.hook_post", gelu_tanh(h @ p["W_gate"]) * (h @ p["W_up"]))  # (batch, seq, d_mlp)
    mlp_out = ctx(pre + "hook_mlp_out", _norm(act @ p["W_down"], p["ln2_post"], cfg))
    return ctx(pre + "hook_resid_post", x + mlp_out)
