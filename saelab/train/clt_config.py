"""A cross-layer transcoder's run config: `[sae] architecture = "clt"` in an ordinary training config.

The CLT spans layers 0..n_layers-1 of `data.model` (`sae.n_layers`, every layer unless set: circuit-tracer's
format numbers a CLT's layers from the model's first) and trains straight from the model (`data.source =
"model"`): each layer's encoder reads that layer's MLP input `blocks.L.ln2.hook_normalized` and its decoders write
the MLP outputs `blocks.T.hook_mlp_out`, T >= L (the hooks circuit-tracer's replacement model reads and writes,
saelab.sae.formats.circuit_tracer). `data.hook` and `data.target_hook` are those hooks as `{layer}` templates,
filled in when unset; d_in, d_out and n_layers come from the model as an SAE's d_in does.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from saelab.runtime.config import explain_errors
from saelab.sae import CLTConfig
from saelab.sae.formats.circuit_tracer import INPUT_HOOK, OUTPUT_HOOK
from saelab.train.config import Resolved, TrainConfig

IN_TEMPLATE = f"blocks.{{layer}}.{INPUT_HOOK}"  # each layer's MLP input, what its encoder reads
OUT_TEMPLATE = f"blocks.{{layer}}.{OUTPUT_HOOK}"  # each layer's MLP output, what the decoders write

__all__ = ["IN_TEMPLATE", "OUT_TEMPLATE", "clt_data_defaults", "layer_hooks", "resolve_clt"]


def layer_hooks(n_layers: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(MLP input hooks, MLP output hooks) of layers 0..n_layers-1."""
    layers = range(n_layers)
    return tuple(IN_TEMPLATE.format(layer=l) for l in layers), tuple(OUT_TEMPLATE.format(layer=l) for l in layers)


def clt_data_defaults(data: Any) -> Any:
    """A CLT's raw [data] table with the hook templates filled in where unset (other values are left to the
    validation that follows)."""
    if not isinstance(data, dict):
        return data
    return {**data, "hook": data.get("hook") or IN_TEMPLATE, "target_hook": data.get("target_hook") or OUT_TEMPLATE}


def resolve_clt(cfg: TrainConfig) -> Resolved:
    """The CLTConfig of a run (d_in, d_out and, unless set, n_layers from the model), after the checks a CLT
    run needs; `Resolved.hook` / `target_hook` are the hook templates, `manifest["hooks"]` every hook it reads."""
    from saelab.train.stream import describe_source, load_model

    data, extra = cfg.data, dict(cfg.sae.model_extra or {})
    if data.source != "model":
        raise ValueError(
            "a CLT trains straight from the model (one forward feeds every layer's MLP input and output; a store "
            "holds one hook pair): set data.source = 'model' and data.model"
        )
    if (data.hook, data.target_hook) != (IN_TEMPLATE, OUT_TEMPLATE):
        raise ValueError(
            f"a CLT reads {IN_TEMPLATE} and writes {OUT_TEMPLATE} (circuit-tracer's mlp.hook_in / mlp.hook_out), got "
            f"data.hook={data.hook!r}, data.target_hook={data.target_hook!r}; remove both"
        )
    if cfg.train.eval_every:
        raise ValueError(
            "train.eval_every splices one SAE into the model; a CLT is evaluated as a replacement model once "
            "trained (`saelab eval RUN`): set train.eval_every = 0"
        )
    if "d_out" in extra:
        raise ValueError("[sae] d_out comes from the model's MLP output width; remove it")
    n_model = load_model(data.model, data.model_dtype).cfg.n_layers
    n = extra.setdefault("n_layers", n_model)
    if not isinstance(n, int) or not 1 <= n <= n_model:
        raise ValueError(f"sae.n_layers must be 1..{n_model} (the layers of {data.model} it spans), got {n!r}")
    first = {"hook": IN_TEMPLATE.format(layer=0), "target_hook": OUT_TEMPLATE.format(layer=0)}
    manifest = describe_source(data.model_copy(update=first))  # layer 0's widths are every layer's
    inputs, targets = layer_hooks(n)
    manifest["hooks"] = [*inputs, *targets]
    d_in = int(manifest["d_model"])
    d_sae = cfg.sae.d_sae or (cfg.sae.expansion or 8) * d_in
    try:
        sae = CLTConfig(d_in=d_in, d_sae=d_sae, d_out=int(manifest["d_out"]), **extra)
    except ValidationError as e:
        why = explain_errors(e, CLTConfig, {name: f"sae.{name}" for name in CLTConfig.model_fields})
        raise ValueError(f"invalid [sae] section:\n{why}") from None
    return Resolved(cfg, sae, IN_TEMPLATE, manifest, OUT_TEMPLATE)
