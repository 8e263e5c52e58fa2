"""Hook points (TransformerLens/SAELens names) and the context that applies hooks during a forward pass.

A hook is a pure JAX function `(activation) -> activation` (or, when it has `needs_positions = True`,
`(activation, positions (batch, seq)) -> activation`, for edits at chosen token positions); the forward
pass calls `ctx(name, x)` at every hook point, which applies the user's function if one is registered and
records the value if it was asked for. Everything happens at trace time, so hooked forwards jit and vmap like
any other JAX function.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping

import jax

from saelab.models.config import ModelConfig

HookFn = Callable[[jax.Array], jax.Array]

# Suffixes per block, in forward order. Shapes: (batch, seq, d_model) unless noted.
BLOCK_HOOKS = (
    "hook_resid_pre",
    "attn.hook_q",  # (batch, seq, n_heads, d_head): the query projection (bias in), before q norm and rotary
    "attn.hook_k",  # (batch, seq, n_kv_heads, d_head): grouped-query models have fewer key/value heads
    "attn.hook_v",  # (batch, seq, n_kv_heads, d_head)
    "attn.hook_rot_q",  # (batch, seq, n_heads, d_head): after rotary (rotary families only)
    "attn.hook_rot_k",  # (batch, seq, n_kv_heads, d_head)
    "attn.hook_attn_scores",  # (batch, n_heads, query, key) float32: scaled, soft-capped, masked, pre-softmax
    "attn.hook_pattern",  # (batch, n_heads, query, key): the softmax probabilities
    "attn.hook_z",  # (batch, seq, n_heads, d_head), before the output projection
    "attn.hook_result",  # (batch, seq, n_heads, d_model), each head after the output projection
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_normalized",  # the MLP's input: hook_resid_mid after the block's pre-MLP norm, weight applied
    "mlp.hook_pre",  # (batch, seq, d_mlp): the pre-activation (gated MLPs: the gate, h @ W_gate)
    "mlp.hook_pre_linear",  # (batch, seq, d_mlp): gated MLPs' up projection h @ W_up (gated families only)
    "mlp.hook_post",  # (batch, seq, d_mlp), MLP neurons
    "hook_mlp_out",
    "hook_resid_post",
)
# Global points, outside the blocks: before block 0 and after the last one. Shapes (batch, seq, d_model).
EMBED_HOOKS = (
    "hook_embed",  # the token embedding, after any scale the family applies (Gemma's sqrt(d_model))
    "hook_pos_embed",  # GPT-2's learned position embedding (hook_embed + hook_pos_embed = blocks.0.hook_resid_pre)
)
FINAL_HOOKS = ("ln_final.hook_normalized",)  # the final norm's output, which the unembedding reads
_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _has(suffix: str, cfg: ModelConfig | None) -> bool:
    """Whether a model (None: any) has a hook point: the rotary, gate, position and pre-MLP norm ones are not
    universal."""
    if cfg is None:
        return True
    if suffix == "hook_pos_embed":
        return cfg.positions == "learned"
    if suffix in ("attn.hook_rot_q", "attn.hook_rot_k"):
        return cfg.positions == "rope"
    if suffix == "mlp.hook_pre_linear":
        return cfg.mlp_gated
    if suffix == "ln2.hook_normalized":
        return cfg.norm_placement != "post"
    return True


def hook_names(model: int | ModelConfig) -> list[str]:
    """All valid hook point names, in forward order, of a model's config (exactly its family's points), or of
    any model with that many blocks (an int: the points of every family)."""
    n_layers, cfg = (model, None) if isinstance(model, int) else (model.n_layers, model)
    blocks = [f"blocks.{layer}.{s}" for layer in range(n_layers) for s in BLOCK_HOOKS if _has(s, cfg)]
    return [n for n in EMBED_HOOKS if _has(n, cfg)] + blocks + list(FINAL_HOOKS)


def hook_layer(name: str, n_layers: int | None = None) -> int:
    """The block index of a hook point name. The embeddings count as block 0 (they are computed before it);
    the final norm's points as `n_layers`, one past the last block (they need the whole forward), which
    is why they need `n_layers`."""
    m = _NAME.match(name)
    if m:
        return int(m.group(1))
    if name in EMBED_HOOKS:
        return 0
    if name in FINAL_HOOKS:
        if n_layers is None:
            raise ValueError(f"{name} comes after the last block: hook_layer needs n_layers for it")
        return n_layers
    raise ValueError(
        f"not a hook point name: {name!r} (expected blocks.L.<point>, {', '.join(EMBED_HOOKS + FINAL_HOOKS)})"
    )


def stop_layer(names: Iterable[str], n_layers: int) -> int | None:
    """The `stop_at_layer` that runs the forward just far enough to reach every hook of `names`: one past the
    deepest block, or None (the whole forward) when a final-norm point is among them."""
    last = max((hook_layer(n, n_layers) for n in names), default=None)
    return None if last is None or last >= n_layers else last + 1


def validate_hook_names(names: Iterable[str], model: int | ModelConfig) -> None:
    """Raise a ValueError listing the valid names if any of `names` is not a hook point of the model (a
    config: its family's points; a number of blocks: any family's)."""
    valid = set(hook_names(model))
    bad = [n for n in names if n not in valid]
    if bad:
        n_layers, cfg = (model, None) if isinstance(model, int) else (model.n_layers, model)
        examples = ", ".join(f"blocks.L.{s}" for s in BLOCK_HOOKS if _has(s, cfg))
        globals_ = ", ".join(n for n in EMBED_HOOKS + FINAL_HOOKS if _has(n, cfg))
        hints = "".join(f" (did you mean {m[0]!r}?)" for n in bad if (m := difflib.get_close_matches(n, valid, 1)))
        valid_text = f"valid names are {examples} for L in 0..{n_layers - 1}, and {globals_}"
        raise ValueError(f"unknown hook point(s) {bad}{hints}; {valid_text}")


class HookContext:
    """Applies registered hooks and records requested activations while a forward pass is traced."""

    def __init__(self, hooks: Mapping[str, HookFn] | None = None, cache: Iterable[str] = (), kv=None) -> None:
        self.hooks = dict(hooks or {})
        self.wanted = frozenset(cache)
        self.cache: dict[str, jax.Array] = {}
        self.kv = kv  # a models.kv_cache.KVCache during incremental decoding, else None
        self.kv_written: dict[int, tuple[jax.Array, jax.Array]] = {}  # layer -> its updated (keys, values)
        self.positions: jax.Array | None = None  # (batch, seq) token positions, set by the forward pass

    def __call__(self, name: str, x: jax.Array) -> jax.Array:
        fn = self.hooks.get(name)
        if fn is not None:
            y = fn(x, self.positions) if getattr(fn, "needs_positions", False) else fn(x)
            if y.shape != x.shape:
                raise ValueError(f"hook at {name} returned shape {y.shape}, expected {x.shape}")
            x = y.astype(x.dtype)
        if name in self.wanted:
            self.cache[name] = x
        return x

    def active(self, name: str) -> bool:
        """Whether anything is attached to `name` (lets the forward skip optional work such as hook_result)."""
        return name in self.hooks or name in self.wanted
