"""`saelab train plan CONFIG`: print the per-device memory of a training config before launching it."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train plan", help="per-device memory (parameters, Adam, batch, activations) of a training config on N devices"
    )
    p.add_argument("config", nargs="?", help="training TOML (see experiments/sae-*.toml)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--d-in", type=int, help="activation width (default: the d_model of data.store's manifest)")
    p.add_argument("--devices", type=int, help="devices in the run, all hosts together (default: those JAX sees)")
    p.add_argument("--memory-gib", type=float, help="memory of one device; says whether the peak fits")
    p.add_argument("--json", action="store_true", help="print JSON (bytes)")
    p.set_defaults(fn=_plan)


def _plan(a: argparse.Namespace) -> int:
    from saelab import train
    from saelab.train.plan import human, plan_config

    if a.devices is not None and a.devices < 1 or a.d_in is not None and a.d_in < 1:
        raise ValueError("--devices and --d-in must be positive")
    m = plan_config(train.load_config(a.config, a.set or []), d_in=a.d_in, devices=a.devices)
    fits = None if a.memory_gib is None else m.peak <= a.memory_gib * (1 << 30)
    if a.json:
        print(
            json.dumps(
                {k: v for k, v in m.rows()}
                | {
                    "d_in": m.sae.d_in,
                    "d_sae": m.sae.d_sae,
                    "architecture": m.sae.architecture,
                    "batch_size": m.batch_size,
                    "mesh_data": m.mesh.data,
                    "mesh_model": m.mesh.model,
                    "fits": fits,
                },
                indent=2,
            )
        )
        return 0 if fits is not False else 1
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"{m.sae.architecture} SAE {m.sae.d_in} x {m.sae.d_sae:,}, batch {m.batch_size:,} on a "
        f"{m.mesh.data} (data) x {m.mesh.model} (model) mesh: memory per device"
    )
    t.add_column("")
    t.add_column("bytes", justify="right")
    t.add_column("", justify="right")
    for name, n in m.rows():
        bold = name.startswith(("train state", "peak"))
        t.add_row(name, f"{n:,}", human(n), style="bold" if bold else None)
    Console().print(t)
    if fits is not None:
        print(f"{'fits' if fits else 'does NOT fit'} in {a.memory_gib:g} GiB per device")
    return 0 if fits is not False else 1
