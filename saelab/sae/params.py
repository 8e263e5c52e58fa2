"""SAEParams: the parameter pytree shared by every architecture, with SAELens names and shapes.

A NamedTuple is a plain pytree, so optax, jax.grad and orbax take it as it is. `threshold` is None for the
architectures without one (relu, topk), which makes it an empty subtree everywhere.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.runtime.finite import NonFiniteError, count_nonfinite, first_nonfinite


class SAEParams(NamedTuple):
    """Parameters of one SAE; all float32 whatever the compute dtype."""

    W_enc: jax.Array  # (d_in, d_sae)
    b_enc: jax.Array  # (d_sae,)
    W_dec: jax.Array  # (d_sae, d_in)
    b_dec: jax.Array  # (d_in,)
    threshold: jax.Array | None = None  # (d_sae,) jumprelu: per latent; batchtopk: one value repeated
    W_skip: jax.Array | None = None  # (d_in, d_out) skip-transcoder: the linear term x @ W_skip

    @property
    def d_out(self) -> int:
        """Width of the reconstruction: d_in for an SAE, the target's width for a transcoder."""
        return self.W_dec.shape[1]

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]


def check_params(
    params: SAEParams, d_in: int, d_sae: int, needs_threshold: bool, d_out: int | None = None, skip: bool = False
) -> None:
    """Raise ValueError when shapes, dtypes or the presence of `threshold` / `W_skip` do not fit the config
    (d_out: a transcoder's output width, None meaning d_in)."""
    d_out = d_in if d_out is None else d_out
    want = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_out), "b_dec": (d_out,)}
    if needs_threshold:
        want["threshold"] = (d_sae,)
    elif params.threshold is not None:
        raise ValueError("this architecture has no threshold, but params.threshold is set")
    if skip:
        want["W_skip"] = (d_in, d_out)
    elif params.W_skip is not None:
        raise ValueError("params.W_skip is set but the config has skip = false")
    for name, shape in want.items():
        value = getattr(params, name)
        if value is None:
            raise ValueError(f"params.{name} is missing")
        if tuple(value.shape) != shape:
            raise ValueError(f"params.{name} has shape {tuple(value.shape)}, expected {shape}")
        if value.dtype != jnp.float32:
            raise ValueError(f"params.{name} must be float32, got {value.dtype}")


def check_finite(params: SAEParams | NamedTuple, source: str) -> None:
    """NonFiniteError naming the first tensor of `params` (loaded from `source`) that holds a NaN or an Inf.

    Every SAE that eval, inspect, atoms, select or circuits use passes here: one NaN weight makes every
    code and metric downstream NaN without an error.
    """
    for name, value in params._asdict().items():
        if value is None:
            continue
        hit = first_nonfinite(np.asarray(value))
        if hit is not None:
            where, kind = hit
            n = count_nonfinite(np.asarray(value))
            raise NonFiniteError(
                f"SAE {source}: tensor {name} holds {n} non-finite value(s) (first: {kind} at index "
                f"{list(where)}); it is unusable. Retrain it (the trainer stops before exporting such weights) "
                "or load another SAE"
            )
