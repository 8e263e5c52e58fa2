"""`[each_layer]`: the `[[saes]]` entries of a multi-SAE run made from one template, one per layer.

A transcoder for every layer of SmolLM2-135M is 30 entries that differ only in their layer; the template writes
them:

    [each_layer]
    layers = "all"                                  # or a list: [0, 5, 10]
    name = "L{layer}"
    hook = "blocks.{layer}.ln2.hook_normalized"
    target_hook = "blocks.{layer}.hook_mlp_out"
    sae = { k = 32 }                                # set over the shared [sae], as an entry's own fields

`layers = "all"` is every layer of the model (on the fly, `data.model`'s) or, from a store, every layer whose
hooks the store holds. The entries are added after any written in `[[saes]]`, and the run's `multi.json` lists
them all, so a resumed run reads the same SAEs.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError

from saelab.runtime.config import Config, explain_errors
from saelab.store import read_manifest
from saelab.train.data_source import data_config
from saelab.train.stream import load_model


class EachLayer(Config):
    """One SAE per layer, made from templates in which `{layer}` stands for the layer number."""

    layers: Literal["all"] | list[int] = "all"
    """The layers: "all" (every layer of the model, or every layer the store holds the hooks of) or a list."""
    name: str = "L{layer}"
    """Sub-run name of each layer's SAE."""
    hook: str = Field(pattern=r"\{layer\}")
    """Input hook of each layer's SAE, e.g. "blocks.{layer}.ln2.hook_normalized"."""
    target_hook: str | None = Field(default=None, pattern=r"\{layer\}")
    """A transcoder's target hook, e.g. "blocks.{layer}.hook_mlp_out"; None trains SAEs."""
    sae: dict[str, Any] = {}
    """[sae] fields every layer's SAE sets over the shared [sae]."""
    optim: dict[str, Any] = {}
    """[optim] fields every layer's SAE sets over the shared [optim]."""
    train: dict[str, Any] = {}
    """Per-SAE [train] fields every layer's SAE sets over the shared [train]."""

    def entries(self, layers: list[int]) -> list[dict[str, Any]]:
        """The `[[saes]]` entries of `layers`."""
        own = {"sae": self.sae, "optim": self.optim, "train": self.train}
        fill = lambda template, layer: None if template is None else template.replace("{layer}", str(layer))
        return [
            {
                "name": fill(self.name, layer),
                "hook": fill(self.hook, layer),
                "target_hook": fill(self.target_hook, layer),
                **own,
            }
            for layer in layers
        ]


def expand_each_layer(raw: Any) -> Any:
    """A multi-SAE config's raw tables with `each_layer` replaced by the entries it makes (appended to `saes`)."""
    if not isinstance(raw, dict) or "each_layer" not in raw:
        return raw
    raw = dict(raw)
    try:
        template = EachLayer(**raw.pop("each_layer"))
    except ValidationError as e:
        raise ValueError(f"invalid [each_layer] section:\n{explain_errors(e, EachLayer)}") from None
    data = raw.get("data", {})
    if isinstance(data, dict) and data.get("hook") is None:  # the first layer's hooks name the shared ones
        first = template.entries([template.layers[0] if template.layers != "all" else 0])[0]
        data = raw["data"] = {**data, "hook": first["hook"]}
    layers = template.layers if template.layers != "all" else _all_layers(template, data)
    if not layers:
        raise ValueError(f"each_layer: no layer has the hooks {template.hook} / {template.target_hook}")
    return raw | {"saes": [*raw.get("saes", []), *template.entries(layers)]}


def _all_layers(template: EachLayer, data: Any) -> list[int]:
    """Every layer of the model run on the fly, or every layer whose hooks (input and target) the store holds."""
    data = data_config(data)
    if data.source == "model":
        return list(range(load_model(data.model, data.model_dtype).cfg.n_layers))
    hooks = set(read_manifest(data.store)["hooks"])
    pattern = re.compile(re.escape(template.hook).replace(re.escape("{layer}"), r"(\d+)"))
    found = sorted(int(m.group(1)) for h in hooks if (m := pattern.fullmatch(h)))
    target = lambda layer: template.entries([layer])[0]["target_hook"]
    return [layer for layer in found if template.target_hook is None or target(layer) in hooks]
