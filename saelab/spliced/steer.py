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
from saelab.models.generate import DEFAULT_NEW_TOKENS
from saelab.sae import LoadedSAE
from saelab.spliced.model import SplicedModel


class Steer(NamedTuple):
    """A hook adding `direction` (d,) at every token position >= `from_position` (1 skips BOS), in the rows
    where `rows` (batch,) is true (every row when None). Its fields are data: steers of one shape share a
    compiled program."""

    direction: jax.Array
    from_position: int = 1
    rows: jax.Array | None = None

    needs_positions = True  # a class attribute, not a field

    def __call__(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        on = (positions >= self.from_position)[..., None]  # (batch, seq, 1)
        if self.rows is not None:
            on = on & jnp.asarray(self.rows, bool)[:, None, None]
        return x + jnp.where(on, self.direction.astype(x.dtype), 0)


class Clamp(NamedTuple):
    """A hook on `H.hook_sae_acts_post` setting latents to values at positions >= `from_position`, in the
    rows where `rows` is true (every row when None)."""

    latents: tuple[int, ...]
    values: tuple[float, ...]
    from_position: int = 1
    rows: jax.Array | None = None

    needs_positions = True  # a class attribute, not a field

    def __call__(self, acts: jax.Array, positions: jax.Array) -> jax.Array:
        on = (positions >= self.from_position)[..., None]
        if self.rows is not None:
            on = on & jnp.asarray(self.rows, bool)[:, None, None]
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
    latents: int | Sequence[int],
    alphas: float | Sequence[float] = (),
    clamp: float | Sequence[float] | None = None,
    *,
    max_new_tokens: int = DEFAULT_NEW_TOKENS,
    from_position: int = 1,
    **sampling,
) -> Continuations:
    """The clean and the steered continuation of `prompt` (same sampling settings and seed), generated as
    two rows of one batch by one compiled loop: the edit applies to the second row only, and its latents,
    strengths and positions are data, so another steer of the same prompt length compiles nothing. Clamping
    runs both rows through the SAE spliced with its error term (exact when nothing is edited)."""
    hook = sae.metadata.get("hook_name")
    if not hook:
        raise ValueError("this SAE does not name its hook (no hook_name in its cfg.json)")
    latents = [int(latents)] if isinstance(latents, int) else [int(i) for i in latents]
    alphas = [float(alphas)] if isinstance(alphas, int | float) else [float(a) for a in alphas]
    rows = jnp.asarray([False, True])
    sampling.setdefault("shared_noise", True)  # both rows draw the same noise: the edit is the only difference
    prompts = [prompt, prompt]
    if clamp is not None:
        clamp = [float(clamp)] if isinstance(clamp, int | float) else [float(v) for v in clamp]
        if len(clamp) != len(latents):
            raise ValueError(f"give one clamp value per latent, got {clamp} for latents {latents}")
        direction(sae, latents, clamp)  # checks the latents' range
        spliced = SplicedModel(model, [sae], use_error_term=True)
        edit = Clamp(tuple(latents), tuple(clamp), from_position, rows)
        out = spliced.generate(prompts, max_new_tokens, hooks={f"{hook}.hook_sae_acts_post": edit}, **sampling)
    else:
        add = Steer(direction(sae, latents, alphas), from_position, rows)
        out = model.generate(prompts, max_new_tokens, prepend_bos=True, hooks={hook: add}, **sampling)
    return Continuations(str(out[0]), str(out[1]))
