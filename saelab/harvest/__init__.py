"""Harvest activations from a model over a corpus into an activation store."""

from saelab.harvest.config import HarvestConfig
from saelab.harvest.harvest import run

__all__ = ["HarvestConfig", "run"]
