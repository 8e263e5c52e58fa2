"""The `synth-world` experiment stage (and `saelab synth generate`): a world, saved, and its samples in a store.

`out/world/` holds the world in SAELens's files (`save_world`), `out/store/` the samples (`write_store`), which
`train`, `train-multi` and `saelens-train` stages read as `data.store = "<out>/store"`. A world is generated
from a preset or a full `WorldConfig`, or loaded from a world SAELens saved (`source`), so both libraries can
train on one world. A rerun reuses a saved world with the same config and resumes the store.
"""

from __future__ import annotations

from pathlib import Path

from saelab.runtime.progress import progress_bar
from saelab.synth.config import SynthWorldConfig, preset
from saelab.synth.store import write_store
from saelab.synth.world import CONFIG_FILE, World, load_world, make_world, save_world


def run(cfg: SynthWorldConfig) -> Path:
    """Make (or load) the world, save it to `out/world`, write `out/store`; returns `out`."""
    world = _world(cfg)
    out = Path(cfg.out)
    save_world(world, out / "world")
    with progress_bar("samples/s", cfg.progress) as bar:
        task = bar.add_task("synthetic samples", total=cfg.samples, info="")
        write_store(
            world,
            out / "store",
            cfg.samples,
            seed=cfg.seed,
            batch=cfg.batch,
            dtype=cfg.dtype,
            overwrite=cfg.overwrite,
            progress=lambda done, _: bar.update(task, completed=done),
        )
    return out


def _world(cfg: SynthWorldConfig) -> World:
    if cfg.source is not None:
        return load_world(cfg.source)
    wanted = preset(cfg.world) if isinstance(cfg.world, str) else cfg.world
    saved = Path(cfg.out) / "world"
    if (saved / CONFIG_FILE).exists():
        old = load_world(saved)
        if old.cfg == wanted:
            return old
    return make_world(wanted)
