"""SAE training: configs, the jitted step, sharding, checkpoints and the run loop."""

from saelab.train.config import TrainConfig, load_config, resolve
from saelab.train.run import TrainResult, input_scale, load_run_config, run
from saelab.train.sae_export import copy_export, export

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
