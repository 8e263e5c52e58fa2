"""Gemma 3 (text-only, `Gemma3ForCausalLM`, model_type `gemma3_text`): Gemma 2's block (pre- and
post-norms around attention and MLP, (1 + w) RMSNorm, embeddings scaled by sqrt(d_model), GeGLU, the query
pre-attention scalar) with an RMSNorm over d_head on every query and key head before rotary, and local /
global layers that differ in more than the mask: sliding layers rotate with their own base (10k), global
ones with `rope_theta` (1M, linearly scaled on the larger models). Soft-capping only where configured.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from saelab.models import gemma2
from saelab.models.config import ModelConfig

Getter = Callable[[str], np.ndarray]

embed = gemma2.embed
block = gemma2.block  # q/k norm and the sliding layers' rotary base are config-driven in layers.attention
unembed = gemma2.unembed


def params_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> dict:
    """Hugging Face Gemma3ForCausalLM tensor names -> saelab params: Gemma 2's plus q/k norms (d_head,),
    all norm weights stored as w and used as 1 + w."""
    params = gemma2.params_from_hf(get, cfg, dtype)
    for i, layer in enumerate(params["layers"]):
        p = f"model.layers.{i}.self_attn."
        layer["q_norm"] = jnp.asarray(get(p + "q_norm.weight"), dtype=dtype)
        layer["k_norm"] = jnp.asarray(get(p + "k_norm.weight"), dtype=dtype)
    return params
