"""Hook points (TransformerLens/SAELens names) and the context that applies hooks during a forward pass.

A hook is a pure JAX function `(activation) -> activation` (or, when it has `needs_positions = True`,
`(activation, positions (batch, seq)) -> activation`, for edits at chosen token positions); the forward
pass calls `ctx(name, x)` at every hook point, which applies the user's function if one is registered and
records the value if it was asked for. Everything happens at trace time, so hooked forwards jit and vmap like
any other JAX function.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

import jax

HookFn = Callable[[jax.Array], jax.Array]

# Suffixes per block, in forward order. Shapes: (batch, seq, d_model) unless noted.
BLOCK_HOOKS = (
    "hook_resid_pre",
    "attn.hook_z",  # (batch, seq, n_heads, d_head), before the output projection
    "attn.hook_result",  # (batch, seq, n_heads, d_model), each head after the output projection
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_normalized",  # the MLP's input: hook_resid_mid after the block's pre-MLP norm, weight applied
    "mlp.hook_post",  # (batch, seq, d_mlp), MLP neurons
    "hook_mlp_out",
    "hook_resid_post",
)
_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


def hook_names(n_layers: int) -> list[str]:
    """All valid hook point names of a model with `n_layers` blocks, in forward order."""
    return [f"blocks.{layer}.{suffix}" for layer in range(n_layers) for suffix in BLOCK_HOOKS]


def hook_layer(name: str) -> int:
    """The block index of a hook point name."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"not a hook point name: {name!r} (expected blocks.L.<point>)")
    return int(m.group(1))


def validate_hook_names(names: Iterable[str], n_layers: int) -> None:
    """Raise a ValueError listing the valid names if any of `names` is not a hook point of the model."""
    valid = set(hook_names(n_layers))
    bad = [n for n in names if n not in valid]
    if bad:
        examples = ", ".join(f"blocks.L.{s}" for s in BLOCK_HOOKS)
        raise ValueError(f"unknown hook point(s) {bad}; valid names are {examples} for L in 0..{n_layers - 1}")


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
