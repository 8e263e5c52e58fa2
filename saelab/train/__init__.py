"""SAE training: configs, the jitted step, sharding, checkpoints and the run loop."""

from saelab.train.config import TrainConfig, load_config, resolve
from saelab.train.run import TrainResult, export, input_scale, load_run_config, run

__all__ = ["TrainConfig", "TrainResult", "export", "input_scale", "load_config", "load_run_config", "resolve", "run"]
