"""SAEs in the loop: spliced models with latent hook points, steering and prompt-level attribution."""

from saelab.spliced.context import SAE_HOOKS, Attached, SplicedContext, sae_hook_names
from saelab.spliced.model import SplicedModel

__all__ = ["SAE_HOOKS", "Attached", "SplicedContext", "SplicedModel", "sae_hook_names"]
