"""The SAE architectures by name: adding one is adding a module with encode/decode/loss and a line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax

from saelab.sae import batchtopk, jumprelu, matryoshka, relu, topk
from saelab.sae.config import SAEConfig
from saelab.sae.losses import AuxState, LossOutput
from saelab.sae.params import SAEParams, check_params

EncodeFn = Callable[[SAEParams, jax.Array, SAEConfig], jax.Array]
DecodeFn = Callable[..., jax.Array]
LossFn = Callable[[SAEParams, jax.Array, SAEConfig, AuxState | None], tuple[jax.Array, LossOutput]]
UpdateFn = Callable[[SAEParams, LossOutput, SAEConfig], SAEParams]


class Architecture(NamedTuple):
    """The pure functions of one architecture."""

    name: str
    encode: EncodeFn  # (params, x (batch, d_in), cfg) -> codes (batch, d_sae), inference mode
    decode: DecodeFn  # (params, codes (batch, d_sae), compute_dtype="float32") -> x_hat (batch, d_in)
    loss: LossFn  # (params, x, cfg, aux_state=None) -> (loss, LossOutput), training mode
    update_threshold: UpdateFn  # after each optimiser step: the BatchTopK threshold EMA, else identity


def _unchanged(params: SAEParams, out: LossOutput, cfg: SAEConfig) -> SAEParams:
    return params


ARCHITECTURES: dict[str, Architecture] = {
    "relu": Architecture("relu", relu.encode, relu.decode, relu.loss, _unchanged),
    "topk": Architecture("topk", topk.encode, topk.decode, topk.loss, _unchanged),
    "batchtopk": Architecture(
        "batchtopk", batchtopk.encode, batchtopk.decode, batchtopk.loss, batchtopk.update_threshold
    ),
    "jumprelu": Architecture("jumprelu", jumprelu.encode, jumprelu.decode, jumprelu.loss, _unchanged),
    "matryoshka": Architecture(
        "matryoshka", matryoshka.encode, matryoshka.decode, matryoshka.loss, matryoshka.update_threshold
    ),
}


def get_architecture(name: str) -> Architecture:
    """The architecture called `name`; ValueError listing the known ones otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown SAE architecture {name!r}; known: {sorted(ARCHITECTURES)}") from None


architecture = get_architecture  # shorter alias, as saelab.train spells it


def encode(params: SAEParams, x: jax.Array, cfg: SAEConfig) -> jax.Array:
    """Inference codes (batch, d_sae) of the architecture `cfg` names."""
    return get_architecture(cfg.architecture).encode(params, x, cfg)


def loss(
    params: SAEParams, x: jax.Array, cfg: SAEConfig, aux_state: AuxState | None = None
) -> tuple[jax.Array, LossOutput]:
    """Training loss of the architecture `cfg` names; checks the parameters against the config first."""
    check_params(params, cfg.d_in, cfg.d_sae, cfg.uses_threshold)
    return get_architecture(cfg.architecture).loss(params, x, cfg, aux_state)
