"""Several SAEs in one training run: the config (a `[[saes]]` list), the one jitted step, the run loop."""

from saelab.train.multi.config import MultiTrainConfig, is_multi_config, load_multi_config, load_multi_run_config
from saelab.train.multi.run import MultiTrainResult, run
from saelab.train.stack import group

__all__ = [
    "MultiTrainConfig",
    "MultiTrainResult",
    "group",
    "is_multi_config",
    "load_multi_config",
    "load_multi_run_config",
    "run",
]
