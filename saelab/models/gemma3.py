"""Gemma 3 (text-only, `Gemma3ForCausalLM`, model_type `gemma3_text`): Gemma 2's block with an RMSNorm over
d_head on every query and key head before rotary, and local / global layers that differ in more than the
mask: sliding layers rotate with their own base (10k), global ones with `rope_theta` (1M, linearly scaled on
the larger models). Soft-capping only where configured.
"""

from __future__ import annotations

from typing import Any

from saelab.models import gemma2
from saelab.models.config import ModelConfig, rope_items
from saelab.models.weights import Family


def config_from_hf(hf: dict[str, Any], name: str = "") -> ModelConfig:
    return gemma2.gemma_config(hf, name, "gemma3", pattern=6, qk_norm=True, **_rope(hf, name))


def _rope(hf: dict[str, Any], name: str) -> dict[str, Any]:
    """The two rotary settings: `rope_theta` / `rope_scaling` and `rope_local_base_freq`, which
    transformers >= 5 writes as `rope_parameters` {full_attention, sliding_attention}."""
    rope = hf.get("rope_parameters") or {}
    if "full_attention" in rope:
        full, local = rope["full_attention"], rope.get("sliding_attention") or {}
    else:
        full = {"rope_theta": hf.get("rope_theta", 1_000_000.0), **(hf.get("rope_scaling") or {})}
        local = {"rope_theta": hf.get("rope_local_base_freq", 10_000.0)}
    if local.get("rope_type", "default") != "default":
        raise ValueError(f"{name or 'config'}: Gemma 3 sliding layers with rope scaling are not supported")
    return dict(
        rope_theta=float(full.get("rope_theta", 1_000_000.0)),
        rope_scaling=rope_items({k: v for k, v in full.items() if k != "rope_theta"}),
        rope_local_theta=float(local.get("rope_theta", 10_000.0)),
    )


FAMILY = Family("gemma3", ("gemma3_text",), config_from_hf, gemma2.weights_from_hf)
