"""Memory plan of a training run: bytes per device before launching, from the config alone (no devices needed).

The train state (`saelab.train.placement.initial_state`) is float32 parameters sharded on the mesh's `model` axis
(W_enc, W_dec, b_enc, threshold; b_dec replicated), Adam's two moments laid out like them, per-latent
bookkeeping (since_fired int32, window_counts float32) on `model`, and a few replicated scalars. The step's
working set adds the gradients (parameter-sized), the batch (batch/data rows of d_in float32) and the
encoder's temporaries (pre-activations, codes, masks and their gradients: a few batch x latents arrays).
The state rows are exact (tests/train/test_plan.py checks them against `jax.eval_shape` of the real
state and its shardings); the working-set rows are an estimate calibrated on XLA's memory analysis.
"""

from __future__ import annotations

from typing import NamedTuple

from saelab.sae import SAEConfig, get_architecture, sae_config
from saelab.sae.clt import CLTConfig
from saelab.train.config import TrainConfig
from saelab.train.mesh import clt_param_specs  # noqa: F401 - where plan's readers find it

F32 = 4
# The step's float32 temporaries are (batch rows x latents) arrays, as many as the architecture's registry
# entry says (`Architecture.latent_arrays`), plus ROW_ARRAYS (batch rows x d_in) arrays, fitted to XLA's
# compiled memory analysis of the real step (CPU, one device, sizes 4k..32k latents) and rounded up;
# tests/train/test_plan.py keeps them within [0.9, 1.45] x XLA's number. GPU and TPU compilers fuse
# differently (not measured here): leave headroom.
ROW_ARRAYS = 8


class Mesh(NamedTuple):
    data: int
    model: int


class MemoryPlan(NamedTuple):
    """Bytes per device of one training run; `state` is what a checkpoint holds, `peak` adds the step."""

    sae: SAEConfig
    batch_size: int
    mesh: Mesh
    params: int  # W_enc, W_dec, b_enc, threshold shards + replicated b_dec
    optimizer: int  # Adam mu and nu (parameter-shaped) + counts
    bookkeeping: int  # since_fired, window_counts shards, step, PRNG key
    gradients: int  # one parameter-sized gradient, alive during the update
    batch: int  # the device's rows of the global batch, float32
    activations: int  # encoder pre-activations, their gradient, dense codes where materialised

    @property
    def state(self) -> int:
        return self.params + self.optimizer + self.bookkeeping

    @property
    def peak(self) -> int:
        return self.state + self.gradients + self.batch + self.activations

    def rows(self) -> list[tuple[str, int]]:
        return [
            ("parameters", self.params),
            ("Adam moments", self.optimizer),
            ("latent bookkeeping", self.bookkeeping),
            ("train state (checkpointed)", self.state),
            ("gradients", self.gradients),
            ("activation batch", self.batch),
            ("encoder activations (estimate)", self.activations),
            ("peak per device (estimate)", self.peak),
        ]


def plan(sae: SAEConfig, batch_size: int, mesh: Mesh) -> MemoryPlan:
    """The per-device memory of training `sae` on global batches of `batch_size` on a `mesh`."""
    if isinstance(sae, CLTConfig):
        return plan_clt(sae, batch_size, mesh)
    if sae.d_sae % mesh.model:
        raise ValueError(f"d_sae={sae.d_sae} is not divisible by the model axis ({mesh.model} devices)")
    if batch_size % mesh.data:
        raise ValueError(f"batch_size={batch_size} is not divisible by the data axis ({mesh.data} devices)")
    d_in, lat = sae.d_in, sae.d_sae // mesh.model  # latents on one device
    rows = batch_size // mesh.data  # batch rows on one device
    arch = get_architecture(sae.architecture)
    params = F32 * (2 * d_in * lat + lat + d_in + (lat if sae.uses_threshold else 0))
    return MemoryPlan(
        sae=sae,
        batch_size=batch_size,
        mesh=mesh,
        params=params,
        optimizer=2 * params + 8,  # mu, nu; Adam's and the schedule's step counts
        bookkeeping=2 * F32 * lat + 4 + 8,  # since_fired, window_counts; step, PRNG key
        gradients=params,
        batch=F32 * rows * d_in,
        activations=F32 * rows * (round(arch.latent_arrays * lat) + ROW_ARRAYS * d_in),
    )


def plan_clt(sae: CLTConfig, batch_size: int, mesh: Mesh) -> MemoryPlan:
    """`plan` for a cross-layer transcoder sharded by `clt_param_specs`: d_sae latents per layer split over
    `model`; the decoders hold one (latents x d_out) block per (source <= target) layer pair, L (L + 1) / 2 of
    them. The batch is each layer's MLP input and output (L x (d_in + d_out) floats a row); the working set
    is the encoder temporaries plus one (rows x d_out) partial output per layer pair, an estimate that
    tests/train/test_plan_clt.py keeps within [0.9, 1.45] x XLA's memory analysis of a CLT Adam step (CPU)."""
    if sae.d_sae % mesh.model:
        raise ValueError(f"d_sae={sae.d_sae} is not divisible by the model axis ({mesh.model} devices)")
    if batch_size % mesh.data:
        raise ValueError(f"batch_size={batch_size} is not divisible by the data axis ({mesh.data} devices)")
    L, d_in, d_out, lat = sae.n_layers, sae.d_in, sae.resolved_d_out, sae.d_sae // mesh.model
    rows, pairs = batch_size // mesh.data, sae.n_layers * (sae.n_layers + 1) // 2
    arrays = get_architecture(sae.activation).latent_arrays  # the temporaries of that activation's SAE
    # sparse TopK: one layer's temporaries alive at a time, plus about one (rows x latents) array per layer;
    # JumpReLU: every layer's dense pre-activations and codes live until the backward pass
    per_row = (L + arrays) * lat if sae.activation == "topk" else L * arrays * lat
    params = F32 * (L * (d_in * lat + lat) + pairs * lat * d_out + L * d_out + (L * lat if sae.uses_threshold else 0))
    return MemoryPlan(
        sae=sae,
        batch_size=batch_size,
        mesh=mesh,
        params=params,
        optimizer=2 * params + 8,
        bookkeeping=2 * F32 * L * lat + 4 + 8,
        gradients=params,
        batch=F32 * rows * L * (d_in + d_out),
        activations=F32 * rows * (round(per_row) + L * ROW_ARRAYS * d_in + pairs * d_out),
    )


def plan_config(cfg: TrainConfig, d_in: int | None = None, devices: int | None = None) -> MemoryPlan:
    """`plan` for a training config: d_in from its store's manifest unless given (plan before harvesting),
    the mesh from train.mesh_data x train.mesh_model over `devices` (default: the devices JAX sees)."""
    if d_in is None:
        from saelab.train.config import resolve

        sae = resolve(cfg).sae
    else:
        extra = dict(cfg.sae.model_extra or {})
        sae = sae_config(extra, d_in=d_in, d_sae=cfg.sae.d_sae or (cfg.sae.expansion or 8) * d_in)
    model = cfg.train.mesh_model
    if devices is None:
        import jax

        devices = jax.device_count()
    if devices % model:
        raise ValueError(f"mesh_model={model} does not divide the {devices} devices")
    data = devices // model if cfg.train.mesh_data == -1 else cfg.train.mesh_data
    if data * model != devices:
        raise ValueError(f"mesh {data} x {model} does not match the {devices} devices")
    return plan(sae, cfg.data.batch_size, Mesh(data, model))


def human(n: int) -> str:
    """Bytes in binary units, three significant figures."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"
