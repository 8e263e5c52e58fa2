"""A fake training run on disk: the resolved config and, optionally, a small exported SAE."""

from __future__ import annotations

from pathlib import Path

import jax

from saelab.runtime.rundir import RunDir
from saelab.sae import ReLUConfig, init_params, save_saelens


def make_run(root: Path, exported: bool = True) -> RunDir:
    run = RunDir(root)
    root.mkdir(parents=True)
    run.config.write_text("{}")
    if exported:
        cfg = ReLUConfig(d_in=4, d_sae=8)
        save_saelens(run.sae, init_params(jax.random.key(0), cfg), cfg, {"hook_name": "h"})
    return run
