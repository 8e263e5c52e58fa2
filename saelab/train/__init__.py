"""SAE training: configs, the jitted step, sharding, checkpoints and the run loop."""

from saelab.train.config import TrainConfig, load_config, resolve
from saelab.train.loop import TrainResult
from saelab.train.run import load_run_config, run
from saelab.train.sae_export import copy_export, export
from saelab.train.source import input_scale

__all__ = [
    "TrainConfig",
    "TrainResult",
    "copy_export",
    "export",
    "input_scale",
    "load_config",
    "load_run_config",
    "resolve",
    "run",
]
