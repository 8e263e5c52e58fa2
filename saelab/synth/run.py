"""The `synth-world` experiment stage (and `saelab synth generate`): a world, saved, and its samples in a store.

`out/world/` holds the world in SAELens's files (`save_world`), `out/store/` the samples (`write_store`), which
`train`, `train-multi` and `saelens-train` stages read as `data.store = "<out>/store"`. A world is generated
from a preset or a full `WorldConfig`, or loaded from a world SAELens saved (`source`), so both libraries can
train on one world. A rerun reuses a saved world with the same config and resumes the store.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from saelab.runtime.config import Config
from saelab.runtime.progress import progress_bar
from saelab.synth.config import Preset, WorldConfig, preset
from saelab.synth.store import write_store
from saelab.synth.world import CONFIG_FILE, World, load_world, make_world, save_world


class SynthWorldConfig(Config):
    world: WorldConfig | Preset = "small"
    """A preset ("small": 4,096 features in d = 192; "synth-sae-bench-16k": the paper's 16,384 in d = 768) or
    a full [world] table of WorldConfig fields."""
    source: Path | None = None
    """A world saved by SAELens's `SyntheticModel.save` (or by saelab) to load instead of generating one."""
    samples: int = Field(default=4_194_304, gt=0)
    """Samples written into the store (train on at most this many for a single pass)."""
    seed: int = 0
    """Seed of the store's sample stream (scoring draws fresh samples from another stream)."""
    batch: int = Field(default=4096, ge=1)
    """Samples drawn per jitted call."""
    dtype: str = "float32"
    """Store dtype (float32, bfloat16, float16)."""
    out: Path = Path("activations/synth")
    """Directory of `world/` and `store/`."""
    overwrite: bool = False
    """Replace a store made with other settings."""
    progress: bool = True


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
