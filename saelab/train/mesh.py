"""Sharding in one place: the (data, model) mesh and the partition specs of SAE state and batches.

Latents are split over `model` (W_enc and W_dec on d_sae, b_enc and threshold too; a cross-layer transcoder's
per-layer arrays on their latent axis, `clt_param_specs`); the batch is split over `data`. Everything else
(b_dec, scalars) is replicated. XLA's SPMD partitioner inserts the collectives.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from saelab.sae import CLTParams, SAEParams

PARAM_SPECS = SAEParams(
    W_enc=P(None, "model"),
    b_enc=P("model"),
    W_dec=P("model", None),
    b_dec=P(None),
    threshold=P("model"),
    W_skip=P(None, None),  # (d_in, d_out) skip-transcoder term: replicated like b_dec
)
BATCH_SPEC = P("data", None)


def make_mesh(data: int = -1, model: int = 1, devices: list | None = None) -> Mesh:
    """A 2-D mesh over all (global) devices; data=-1 takes every device not on the model axis."""
    devices = devices if devices is not None else jax.devices()
    n = len(devices)
    if n % model:
        raise ValueError(f"mesh_model={model} does not divide the {n} devices")
    data = n // model if data == -1 else data
    if data * model != n:
        raise ValueError(f"mesh {data} x {model} does not match the {n} devices available")
    return Mesh(np.asarray(devices).reshape(data, model), ("data", "model"))


def clt_param_specs(n_layers: int) -> CLTParams:
    """Partition specs of a CLT's parameters: every array with a latent axis is split on it over `model`, as an
    SAE's are (W_enc (L, d_in, d_sae) and b_enc, threshold (L, d_sae) on their last axis, each W_dec[l]
    (d_sae, L - l, d_out) on its first); b_dec (L, d_out) is replicated."""
    return CLTParams(
        W_enc=P(None, None, "model"),
        b_enc=P(None, "model"),
        W_dec=tuple(P("model", None, None) for _ in range(n_layers)),
        b_dec=P(None, None),
        threshold=P(None, "model"),
    )


def param_shardings(mesh: Mesh, params: SAEParams | CLTParams) -> SAEParams | CLTParams:
    """NamedShardings for a params pytree, an SAE's or a CLT's (None entries stay None)."""
    if isinstance(params, CLTParams):
        specs = clt_param_specs(params.n_layers)
        named = lambda v, s: None if v is None else jax.tree.map(lambda _, p: NamedSharding(mesh, p), v, s)
        return CLTParams(*(named(v, s) for v, s in zip(params, specs, strict=True)))
    return SAEParams(
        *(None if v is None else NamedSharding(mesh, s) for v, s in zip(params, PARAM_SPECS, strict=False))
    )


def check_divisible(mesh: Mesh, d_sae: int, batch: int) -> None:
    if d_sae % mesh.shape["model"]:
        raise ValueError(f"d_sae={d_sae} is not divisible by the model axis ({mesh.shape['model']} devices)")
    if batch % mesh.shape["data"]:
        raise ValueError(f"batch_size={batch} is not divisible by the data axis ({mesh.shape['data']} devices)")
