"""What a measurement ran on: CPU model and vector extensions, core count, accelerator, library versions.

Speed ratios depend on all of these (the same bench can win on one CPU and lose on another), so every
bench result records them and never stands for another machine.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from saelab.runtime import hugepages

VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "transformers", "sae-lens")
# The vector extensions XLA's and torch's CPU kernels dispatch on, as /proc/cpuinfo spells them.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


class CpuInfo(NamedTuple):
    """The CPU as a bench records it."""

    cpu: str  # model name
    isa: str  # the widest vector extension: amx, avx512, avx2, else the machine type
    cpu_flags: list[str]  # those of ISA_FLAGS it has


def cpu_info(cpuinfo: str | None = None) -> CpuInfo:
    """CPU model name, the vector extensions of ISA_FLAGS it has, and the widest of them (`isa`)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    present = [f for f in ISA_FLAGS if f in flags]
    if "amx_tile" in flags:
        isa = "amx"
    elif "avx512f" in flags:
        isa = "avx512"
    elif "avx2" in flags:
        isa = "avx2"
    else:
        isa = platform.machine() or "unknown"
    return CpuInfo(model, isa, present)


def versions(packages: tuple[str, ...] = VERSIONED) -> dict[str, str]:
    """Installed version of each package, `absent` for those not installed."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def machine() -> dict[str, object]:
    """Everything a bench JSON records about where it ran."""
    import jax

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        **cpu_info()._asdict(),
        "cores": cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        **hugepages.state()._asdict(),
        "versions": versions(),
    }


def context_fields(m: dict[str, object]) -> dict[str, object]:
    """The short `key=value` context a RESULT line carries: CPU, ISA, cores and the versions that matter."""
    v = m["versions"]
    assert isinstance(v, dict)
    return {
        "cpu": str(m["cpu"]).replace(" ", "_"),
        "isa": m["isa"],
        "cores": m["cores"],
        "backend": m["jax_backend"],
        "jax": v["jax"],
        "jaxlib": v["jaxlib"],
        "torch": v["torch"],
        "sae_lens": v["sae-lens"],
        "transformers": v["transformers"],
        "hugepages": m.get("malloc_hugetlb"),
    }
