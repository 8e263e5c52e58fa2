"""Many processes, one program: start JAX's distributed runtime from flags or from the launcher's environment.

Every compute command (harvest, train, eval) runs unchanged on N hosts: each host starts the same command, JAX
connects the processes (`jax.distributed.initialize`), `jax.devices()` becomes the global device list and one
mesh spans them all. saelab adds no coordination of its own; the few cross-process steps (a barrier, gathering
a sharded array to the host) are JAX's `multihost_utils`.

Where the settings come from, first match wins:
1. `--coordinator HOST:PORT --num-processes N --process-id I` (any flag left out is auto-detected by JAX);
2. a multi-process launcher: SLURM (`srun`, SLURM_NTASKS > 1), Open MPI (`mpirun`, OMPI_COMM_WORLD_SIZE > 1),
   a Cloud TPU pod slice (TPU_WORKER_HOSTNAMES lists several hosts) or JAX_COORDINATOR_ADDRESS: JAX's own
   cluster detection then fills in everything;
3. otherwise one process, no runtime. `--distributed on` forces JAX's auto-detection (e.g. on a TPU VM where
   only the metadata server knows the slice), `--distributed off` never starts the runtime.
On CPU the cross-process collectives use gloo (`jax_cpu_collectives_implementation`), which is how the tests
run two real processes on one machine.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Literal

import jax
import numpy as np
from pydantic import Field

from saelab.runtime.config import Config

Mode = Literal["auto", "on", "off"]


class DistributedConfig(Config):
    """How this process joins a multi-process run; the fields are the `--coordinator ...` flags."""

    coordinator: str | None = None
    """HOST:PORT of process 0's coordinator service (every process gives the same address)."""
    num_processes: int | None = Field(default=None, ge=1)
    """Number of processes in the run (usually one per host, or one per GPU)."""
    process_id: int | None = Field(default=None, ge=0)
    """This process's index, 0 .. num_processes - 1."""
    distributed: Mode = "auto"
    """auto: start the runtime when flags or a launcher (SLURM, Open MPI, TPU pod, JAX_COORDINATOR_ADDRESS) say
    so; on: always (JAX auto-detects what is not given); off: never."""


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add --coordinator, --num-processes, --process-id and --distributed to a compute command."""
    g = parser.add_argument_group("multi-host (jax.distributed; see docs/multihost.md)")
    for name, field in DistributedConfig.model_fields.items():
        kw: dict[str, Any] = {"dest": f"dist_{name}", "default": field.default, "help": field.description}
        if name == "distributed":
            kw["choices"] = ["auto", "on", "off"]
        else:
            kw |= {"type": str, "metavar": "HOST:PORT"} if name == "coordinator" else {"type": int, "metavar": "N"}
        g.add_argument("--" + name.replace("_", "-"), **kw)


def initialize_from_args(ns: argparse.Namespace) -> bool:
    """`initialize` with the flags of `add_flags` if this command has them; True when running multi-process."""
    if not hasattr(ns, "dist_distributed"):
        return False
    return initialize(DistributedConfig(**{k: getattr(ns, f"dist_{k}") for k in DistributedConfig.model_fields}))


def initialize(cfg: DistributedConfig | None = None) -> bool:
    """Start jax.distributed if `cfg` or the environment asks for it (see the module docstring); idempotent.

    Must run before anything touches a JAX device. Returns whether more than one process takes part.
    """
    cfg = cfg or DistributedConfig()
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    given = {"coordinator_address": cfg.coordinator, "num_processes": cfg.num_processes, "process_id": cfg.process_id}
    if cfg.distributed == "off":
        if any(v is not None for v in given.values()):
            raise ValueError("--distributed off contradicts --coordinator/--num-processes/--process-id")
        return False
    wanted = cfg.distributed == "on" or any(v is not None for v in given.values()) or launcher() is not None
    if not wanted:
        return False
    if cfg.num_processes is not None and cfg.process_id is not None and cfg.process_id >= cfg.num_processes:
        raise ValueError(f"--process-id {cfg.process_id} must be below --num-processes {cfg.num_processes}")
    if cfg.coordinator is not None and ":" not in cfg.coordinator:
        raise ValueError(f"--coordinator {cfg.coordinator!r} must be HOST:PORT")
    # Cross-process collectives between CPU devices need an implementation; gloo ships with jaxlib. It only
    # affects the CPU backend, so it is harmless on GPU and TPU hosts.
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None})
    return jax.process_count() > 1


def launcher(environ: dict[str, str] | None = None) -> str | None:
    """The multi-process launcher this process was started by ("slurm", "openmpi", "tpu", "env"), or None.

    Only launches of more than one process count: a one-task `srun` or a single TPU VM needs no runtime.
    """
    env = os.environ if environ is None else environ
    if int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1) > 1 and "SLURM_STEP_NODELIST" in env:
        return "slurm"
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return "openmpi"
    if len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
        return "tpu"
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "env"
    return None


def is_main() -> bool:
    """Whether this is process 0, the one that writes shared files (manifests, configs, exports, logs)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier `name` (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def put(tree: Any, shardings: Any) -> Any:
    """`jax.device_put(tree, shardings)` that is also right across processes, where every process holds the
    same values: those are staged through host memory, because a device array put onto a sharding spanning
    processes comes out malformed (jax 0.10: its shards cannot be listed, so orbax cannot save it)."""
    if jax.process_count() > 1:
        tree = jax.tree.map(lambda a: np.asarray(a) if isinstance(a, jax.Array) else a, tree)
    return jax.device_put(tree, shardings)


def to_host(tree: Any) -> Any:
    """A pytree of (possibly multi-process sharded) arrays as NumPy on every process; None leaves stay None.

    Arrays this process holds entirely are copied as they are; the others are gathered from all processes.
    """

    def one(a: Any) -> Any:
        if not isinstance(a, jax.Array) or a.is_fully_addressable or a.is_fully_replicated:
            return np.asarray(jax.device_get(a))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))

    return jax.tree.map(one, tree)
