"""Steering: add `alpha * W_dec[i]` for one or several latents at chosen positions, or clamp latent i to a
value inside the spliced SAE (Templeton et al. 2024, "Scaling Monosemanticity", feature steering by
clamping; Turner et al. 2023, activation addition).

Adding moves the residual stream along the latent's decoder direction whatever the SAE would do; clamping
runs the SAE with its error term and sets the latent's activation, so the stream moves by
`(value - activation) * W_dec[i]` and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from saelab.models import Model
from saelab.sae import LoadedSAE
from saelab.spliced.model import SplicedModel


class Steer:
    """A hook adding `direction` (d,) at every token position >= `from_position` (1 skips BOS)."""

    needs_positions = True

    def __init__(self, direction: jax.Array, from_position: int = 1) -> None:
        self.direction = direction
        self.from_position = from_position

    def __call__(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        on = (positions >= self.from_position)[..., None]  # (batch, seq, 1)
        return x + jnp.where(on, self.direction.astype(x.dtype), 0)


class Clamp(NamedTuple):
    """A hook on `H.hook_sae_acts_post` setting latents to values at positions >= `from_position`."""

    latents: tuple[int, ...]
    values: tuple[float, ...]
    from_position: int = 1

    needs_positions = True  # a class attribute, not a field

    def __call__(self, acts: jax.Array, positions: jax.Array) -> jax.Array:
        on = (positions >= self.from_position)[..., None]
        idx = jnp.asarray(self.latents)
        new = acts.at[..., idx].set(jnp.asarray(self.values, acts.dtype))
        return jnp.where(on, new, acts)


def direction(sae: LoadedSAE, latents: Sequence[int], alphas: Sequence[float]) -> jax.Array:
    """sum_j alphas[j] * W_dec[latents[j]], (d_in,)."""
    if len(latents) != len(alphas) or not latents:
        raise ValueError(f"give one alpha per latent, got latents {list(latents)} and alphas {list(alphas)}")
    bad = [i for i in latents if not 0 <= i < sae.cfg.d_sae]
    if bad:
        raise ValueError(f"latents {bad} are out of range for an SAE with d_sae={sae.cfg.d_sae}")
    return jnp.asarray(alphas, jnp.float32) @ sae.params.W_dec[jnp.asarray(latents)]


class Continuations(NamedTuple):
    clean: str
    steered: str


def steer(
    model: Model,
    sae: LoadedSAE,
    prompt: str,
    latents: Sequence[int],
    alphas: Sequence[float] = (),
    clamp: Sequence[float] | None = None,
    *,
    max_new_tokens: int = 32,
    from_position: int = 1,
    **sampling,
) -> Continuations:
    """The clean and the steered continuation of `prompt` (same sampling settings and seed)."""
    hook = sae.metadata.get("hook_name")
    if not hook:
        raise ValueError("this SAE does not name its hook (no hook_name in its cfg.json)")
    clean = model.generate(prompt, max_new_tokens, prepend_bos=True, **sampling)
    if clamp is not None:
        if len(clamp) != len(latents):
            raise ValueError(f"give one clamp value per latent, got {list(clamp)} for latents {list(latents)}")
        spliced = SplicedModel(model, [sae], use_error_term=True)
        edit = Clamp(tuple(int(i) for i in latents), tuple(float(v) for v in clamp), from_position)
        steered = spliced.generate(prompt, max_new_tokens, hooks={f"{hook}.hook_sae_acts_post": edit}, **sampling)
    else:
        add = Steer(direction(sae, latents, alphas), from_position)
        steered = model.generate(prompt, max_new_tokens, prepend_bos=True, hooks={hook: add}, **sampling)
    return Continuations(str(clean), str(steered))
