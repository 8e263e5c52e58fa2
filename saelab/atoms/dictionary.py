"""The dictionaries the atoms analysis compares (docs/methods.md, "Atoms", baselines), behind one interface.

- neurons: the standard basis of the hooked space; the code of an activation is the activation itself.
- features: the decoder rows of an ordinary SAE (ReLU+L1, TopK, BatchTopK, Matryoshka), codes from its
  encoder.
- atoms: the decoder rows of a threshold (JumpReLU) SAE, codes from its encoder; which architectures give
  atoms is their registry entry's `atoms` fact.

A `Dictionary` holds the rows D (m, d), the decoder bias added to `z D` and a jitted encoder from raw
activations to dense (b, m) codes, so every analysis treats the three kinds alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from saelab.sae import LoadedSAE, SAEConfig, SAEParams, encode, get_architecture, load_sae

Kind = Literal["neurons", "features", "atoms"]


class Dictionary(NamedTuple):
    """One dictionary on one hook point."""

    name: str  # label in the table, e.g. "atoms (jumprelu, 2304)"
    kind: Kind
    architecture: str  # "identity" for neurons, else the SAE architecture
    hook: str | None  # hook point the dictionary was made for (None: any)
    D: jax.Array  # (m, d) dictionary rows (decoder rows)
    bias: jax.Array | None  # (d,) added to z D in the reconstruction (the decoder bias), None for neurons
    encode: Callable[[jax.Array], jax.Array]  # (b, d) raw activations -> (b, m) dense codes
    source: str  # where it came from: "standard basis" or the SAE path

    @property
    def m(self) -> int:
        return self.D.shape[0]


def neurons(d: int, hook: str | None = None) -> Dictionary:
    """The standard basis of R^d: code = activation, R^2 = 1 by construction."""
    return _basis(d, hook, "neurons", _identity, "standard basis")


def _basis(d: int, hook: str | None, name: str, encode: Callable[[jax.Array], jax.Array], source: str) -> Dictionary:
    """The standard basis of R^d as a dictionary with the code rule `encode`."""
    return Dictionary(
        name=name,
        kind="neurons",
        architecture="identity",
        hook=hook,
        D=jnp.eye(d, dtype=jnp.float32),
        bias=None,
        encode=encode,
        source=source,
    )


def thresholded_neurons(d: int, threshold: float, hook: str | None = None) -> Dictionary:
    """The standard basis of R^d with code a * 1[|a| > threshold * max_j |a_j|] per token: MLP neurons
    counted active only above a fraction of the token's largest |activation| (K = how many are)."""
    if not 0 < threshold < 1:
        raise ValueError(f"neuron threshold must be in (0, 1), got {threshold}")

    @jax.jit
    def _encode(x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)  # (b, d)
        return jnp.where(jnp.abs(x) > threshold * jnp.max(jnp.abs(x), axis=1, keepdims=True), x, 0.0)

    return _basis(
        d,
        hook,
        f"MLP neurons (|a| > {threshold:g} max|a|)",
        _encode,
        f"standard basis, active above {threshold:g} of the token's largest |activation|",
    )


def kind_of(architecture: str) -> Kind:
    """Threshold-activated SAEs are the paper's atoms; every other architecture gives ordinary features."""
    return "atoms" if get_architecture(architecture).atoms else "features"


def from_sae(sae: LoadedSAE, name: str | None = None, source: str = "") -> Dictionary:
    """The decoder rows of a loaded SAE as a dictionary, its inference encoder as the coder."""
    return from_params(sae.params, sae.cfg, sae.metadata.get("hook_name"), name, source)


def from_params(
    params: SAEParams, cfg: SAEConfig, hook: str | None = None, name: str | None = None, source: str = ""
) -> Dictionary:
    """The decoder rows of SAE parameters (for raw activations) as a dictionary, the encoder as the coder."""
    kind = kind_of(cfg.architecture)

    @jax.jit
    def _encode(x: jax.Array) -> jax.Array:
        return encode(params, x.astype(jnp.float32), cfg)  # (b, d_sae)

    return Dictionary(
        name=name or f"{kind} ({cfg.architecture}, {cfg.d_sae})",
        kind=kind,
        architecture=cfg.architecture,
        hook=hook,
        D=jnp.asarray(params.W_dec, jnp.float32),
        bias=jnp.asarray(params.b_dec, jnp.float32),
        encode=_encode,
        source=source,
    )


def load_dictionary(path: str | Path, name: str | None = None) -> Dictionary:
    """An SAE run directory (checkpoints/NAME) or SAELens-format directory as a dictionary."""
    return from_sae(load_sae(path), name, str(path))


@jax.jit
def _identity(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32)
