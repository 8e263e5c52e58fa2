"""The model an SAE belongs to, loaded with it (the SAE's cfg.json names both its model and its hook)."""

from __future__ import annotations

from pathlib import Path

from saelab.models import Model
from saelab.models.hook_views import hook_width
from saelab.sae import LoadedSAE, load_sae


def model_and_sae(sae_path: str | Path, model_name: str | None = None) -> tuple[Model, LoadedSAE]:
    """(model, SAE) for an SAE directory or training run; `model_name` overrides the model the SAE names."""
    sae = load_sae(sae_path)
    name = model_name or sae.metadata.get("model_name")
    if not name:
        raise ValueError(f"SAE {sae_path} does not name its model; pass --model")
    model = Model.load(name, process=sae.metadata.get("model_processing") or "none")
    hook = sae.metadata.get("hook_name")
    if hook not in model.hook_names():
        raise ValueError(f"the SAE's hook {hook!r} is not a hook point of {name}; pass the right --model")
    head = sae.metadata.get("hook_head_index")
    width = hook_width(model.cfg, hook, None if head is None else int(head))
    if width != sae.cfg.d_in:  # before anything runs: a mismatch would fail deep inside a forward pass
        raise ValueError(
            f"SAE d_in {sae.cfg.d_in} does not match hook {hook} width {width} of model {name}; "
            "pass the model the SAE was trained on (--model)"
        )
    return model, sae
