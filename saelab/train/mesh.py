"""Sharding in one place: the (data, model) mesh and the partition specs of SAE state and batches.

Latents are split over `model` (W_enc and W_dec on d_sae, b_enc and threshold too); the batch is split over
`data`. Everything else (b_dec, scalars) is replicated. XLA's SPMD partitioner inserts the collectives.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from saelab.sae import SAEParams

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


def param_shardings(mesh: Mesh, params: SAEParams) -> SAEParams:
    """NamedShardings for a params pytree (None entries stay None)."""
    return SAEParams(
        *(None if v is None else NamedSharding(mesh, s) for v, s in zip(params, PARAM_SPECS, strict=False))
    )


def check_divisible(mesh: Mesh, d_sae: int, batch: int) -> None:
    if d_sae % mesh.shape["model"]:
        raise ValueError(f"d_sae={d_sae} is not divisible by the model axis ({mesh.shape['model']} devices)")
    if batch % mesh.shape["data"]:
        raise ValueError(f"batch_size={batch} is not divisible by the data axis ({mesh.shape['data']} devices)")
