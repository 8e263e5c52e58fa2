"""How an SAE sees a hook point: the width of the activation there and how an SAE reads and writes it.

Every hook the harvester stores is one row per token. At `attn.hook_z` the model gives (batch, seq, heads,
d_head) and an SAE reads the heads concatenated, (batch, seq, heads * d_head), as SAELens's hook_z SAEs do;
with a `hook_head_index` (SAELens's field) it reads that one head's d_head slice and a splice replaces only
that head. `attn.hook_result` (heads x d_model per token) is no SAE input. The harvester, the eval's splice
and spliced models all use these functions, so the rule lives here only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from saelab.models.config import ModelConfig


def hook_shape(cfg: ModelConfig, hook: str) -> tuple[int, ...]:
    """The per-token shape of the activation at `hook`: (n_heads, d_head) at attn.hook_z, (d_mlp,) at
    mlp.hook_post, (d_model,) at the residual-width hooks."""
    if hook.endswith("attn.hook_result"):
        raise ValueError(
            f"{hook} is (heads x d_model) per token, not an SAE input; use hook_attn_out or attn.hook_z instead"
        )
    if hook.endswith("attn.hook_z"):
        return (cfg.n_heads, cfg.d_head)
    if hook.endswith("mlp.hook_post"):
        return (cfg.d_mlp,)
    return (cfg.d_model,)


def hook_width(cfg: ModelConfig, hook: str, head_index: int | None = None) -> int:
    """Features per token an SAE at `hook` reads: the stored row width, or d_head for one head of hook_z."""
    shape = hook_shape(cfg, hook)
    check_head_index(cfg, hook, head_index)
    if head_index is not None:
        return shape[-1]
    width = 1
    for n in shape:
        width *= n
    return width


def check_head_index(cfg: ModelConfig, hook: str, head_index: int | None) -> None:
    """A head index is only meaningful at attn.hook_z and must name one of the model's heads."""
    if head_index is None:
        return
    if not hook.endswith("attn.hook_z"):
        raise ValueError(f"hook_head_index={head_index} is only defined at attn.hook_z, not at {hook}")
    if not 0 <= head_index < cfg.n_heads:
        raise ValueError(f"hook_head_index={head_index} is out of range: the model has {cfg.n_heads} heads")


def sae_input(x: jax.Array, head_index: int | None = None) -> jax.Array:
    """The SAE's view (..., d_in) of a hook activation (batch, seq, d) or (batch, seq, heads, d_head)."""
    if x.ndim == 4:
        return x[:, :, head_index] if head_index is not None else x.reshape(*x.shape[:2], -1)
    return x


def with_sae_output(x: jax.Array, y: jax.Array, head_index: int | None = None) -> jax.Array:
    """The hook activation `x` with the SAE's view replaced by `y` (batch, seq, d_in): at hook_z with a head
    index only that head changes."""
    if x.ndim == 4 and head_index is not None:
        return x.at[:, :, head_index].set(y.astype(x.dtype))
    return y.reshape(x.shape).astype(x.dtype)


def row_view(cfg: ModelConfig, hook: str, row: jax.Array, head_index: int | None = None) -> jax.Array:
    """A stored row (the hook's full width, e.g. a store's mean) -> the SAE's view of it (d_in,)."""
    x = jnp.asarray(row).reshape(1, 1, *hook_shape(cfg, hook))
    return sae_input(x, head_index)[0, 0]
