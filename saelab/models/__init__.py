"""JAX transformers with TransformerLens-style hook points: Llama family, Gemma 2 and 3, GPT-2, Qwen2/2.5/3,
GPT-NeoX (Pythia)."""

from saelab.models.config import ModelConfig, config_from_hf
from saelab.models.hooks import BLOCK_HOOKS, HookContext, hook_layer, hook_names, validate_hook_names
from saelab.models.model import Model
from saelab.models.transformer import ForwardOutput, forward
from saelab.models.weights import AttentionWeights, LayerWeights, MLPWeights, ModelWeights, Norm

__all__ = [
    "BLOCK_HOOKS",
    "AttentionWeights",
    "ForwardOutput",
    "HookContext",
    "LayerWeights",
    "MLPWeights",
    "Model",
    "ModelConfig",
    "ModelWeights",
    "Norm",
    "config_from_hf",
    "forward",
    "hook_layer",
    "hook_names",
    "validate_hook_names",
]
