"""The model families by name: each is one file that maps a Hugging Face config onto `ModelConfig` and the
checkpoint's tensor names onto `ModelWeights`; the block they all run is `transformer.block`.

Adding a family is adding its file (defining a `Family`) and one line to `_SHIPPED` (or a `register` call).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from saelab.models.config import ModelConfig
from saelab.models.weights import Family, Getter, ModelWeights

FAMILIES: dict[str, Family] = {}
_BY_MODEL_TYPE: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Make a family available by its name and its Hugging Face model types."""
    FAMILIES[family.name] = family
    _BY_MODEL_TYPE.update(dict.fromkeys(family.model_types, family))
    return family


def family_of(hf: dict[str, Any], name: str = "") -> Family:
    """The family that reads a Hugging Face `config.json` dict; unsupported types list the supported ones."""
    model_type = hf.get("model_type", "")
    if model_type == "gemma3":
        raise ValueError(
            f"{name or 'config'} is a multimodal Gemma 3 checkpoint (Gemma3ForConditionalGeneration); saelab "
            "reads the text-only Gemma3ForCausalLM (model_type gemma3_text), e.g. google/gemma-3-1b-pt"
        )
    if model_type not in _BY_MODEL_TYPE:
        raise ValueError(
            f"unsupported architecture {model_type!r} in {name or 'config'}; "
            f"saelab supports model_type in {sorted(_BY_MODEL_TYPE)}"
        )
    return _BY_MODEL_TYPE[model_type]


def weights_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> ModelWeights:
    """The typed weights of a checkpoint (tensors by Hugging Face name) for `cfg`'s family."""
    return FAMILIES[cfg.family].weights_from_hf(get, cfg, dtype)


def _register_shipped() -> None:
    from saelab.models import gemma2, gemma3, gpt2, gpt_neox, llama, qwen

    for family in (llama.FAMILY, qwen.FAMILY, gemma2.FAMILY, gemma3.FAMILY, gpt2.FAMILY, gpt_neox.FAMILY):
        register(family)


_register_shipped()
