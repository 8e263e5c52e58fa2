"""circuit-tracer's transcoder format (circuit-tracer 0.5, `circuit_tracer/utils/caching.py` and
`transcoder/*.py`): what its `load_transcoders_from_cache`, `load_clt` and `load_transcoder_set` read.

A folder with `config.yaml` (`model_kind`, `feature_input_hook`, `feature_output_hook`, `model_name`, `scan`)
and, for `model_kind: cross_layer_transcoder`, per layer l `W_enc_{l}.safetensors` holding `W_enc_{l}`
(d_sae, d_in), `b_enc_{l}`, `b_dec_{l}` and, for JumpReLU, `threshold_{l}` (d_sae,), and `W_dec_{l}.safetensors`
holding `W_dec_{l}` (d_sae, L - l, d_out), saelab's own layout; for `model_kind: transcoder_set`, per layer
`layer_{l}.safetensors` holding `W_enc` (d_sae, d_model), `W_dec` (d_sae, d_model), `b_enc`, `b_dec` and
`activation_function.threshold` or `W_skip` (d_model, d_model, applied as x @ W_skip.T).

circuit-tracer has ReLU and JumpReLU activations only; a TopK CLT or transcoder is written with the JumpReLU
thresholds the caller gives (`topk_thresholds` calibrates them on a batch), which circuit-tracer then runs,
and saelab, reading the `saelab` entry of config.yaml, loads back as the TopK model it was. A ReLU model from
elsewhere loads as JumpReLU with thresholds 0 (the same function). Hook names are circuit-tracer's, relative to
a block: saelab's `blocks.L.ln2.hook_normalized` (the MLP's input, norm weight applied) -> `blocks.L.hook_mlp_out`
(its output) are the hooks circuit-tracer's ReplacementMLP adds around every MLP, `mlp.hook_in` ->
`mlp.hook_out` (what its Llama transcoders name); TransformerLens's own `ln2.hook_normalized` is taken before
the norm weight, so it would feed a transcoder other inputs than it was trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from safetensors.numpy import load_file, save_file

from saelab.sae.clt import CLTConfig, CLTParams, check_clt_params, check_inputs
from saelab.sae.clt_kernels import clt_topk_codes
from saelab.sae.clt_train import check_clt_finite
from saelab.sae.config import SAEConfig
from saelab.sae.params import SAEParams, check_finite, check_params
from saelab.sae.registry import sae_config

CFG_FILE = "config.yaml"
INPUT_HOOK, OUTPUT_HOOK = "ln2.hook_normalized", "hook_mlp_out"  # saelab's hooks of a block, blocks.L.<hook>
CT_INPUT_HOOK, CT_OUTPUT_HOOK = "mlp.hook_in", "mlp.hook_out"  # the same points as circuit-tracer names them

__all__ = ["CircuitTracerModel", "save_clt", "save_transcoder_set", "load", "detect", "topk_thresholds"]


class CircuitTracerModel(NamedTuple):
    """What a circuit-tracer folder holds, as saelab models: a CLT, or one transcoder per layer."""

    kind: str  # "cross_layer_transcoder" or "transcoder_set"
    clt: tuple[CLTParams, CLTConfig] | None  # the CLT (cross_layer_transcoder)
    layers: list[tuple[SAEParams, SAEConfig]]  # the per-layer transcoders (transcoder_set), layer order
    metadata: dict[str, Any]  # config.yaml's other entries (hooks, model_name, scan)


def detect(path: Path) -> bool:
    """Whether `path` is a folder in circuit-tracer's format."""
    return (path / CFG_FILE).is_file() and any(path.glob("*_0.safetensors"))


def save_clt(
    path: Path,
    params: CLTParams,
    cfg: CLTConfig,
    *,
    model_name: str,
    thresholds: np.ndarray | None = None,
    provenance: dict[str, Any] | None = None,
    **hooks,
) -> Path:
    """Write a CLT in circuit-tracer's format; `thresholds` (L, d_sae): the JumpReLU thresholds a TopK CLT is
    written with (required for one, refused for a JumpReLU CLT, whose own thresholds are written);
    `provenance`: where it comes from (saelab's trainer writes its run, model alias and scales), kept in the
    `saelab` entry of config.yaml and read back as `metadata["provenance"]`."""
    check_clt_params(params, cfg)
    check_clt_finite(params, str(path))
    theta = _thresholds(cfg.activation == "topk", params.threshold, thresholds, (cfg.n_layers, cfg.d_sae), "CLT")
    path.mkdir(parents=True, exist_ok=True)
    for l in range(cfg.n_layers):
        enc = {f"W_enc_{l}": params.W_enc[l].T, f"b_enc_{l}": params.b_enc[l], f"b_dec_{l}": params.b_dec[l]}
        if theta is not None:
            enc[f"threshold_{l}"] = theta[l]
        save_file(_numpy(enc), str(path / f"W_enc_{l}.safetensors"))
        save_file(_numpy({f"W_dec_{l}": params.W_dec[l]}), str(path / f"W_dec_{l}.safetensors"))
    ours = {"config": cfg.model_dump(mode="json")} | ({"provenance": provenance} if provenance else {})
    _write_cfg(path, "cross_layer_transcoder", model_name, ours, hooks)
    return path


def topk_thresholds(params: CLTParams, x: jax.Array, cfg: CLTConfig) -> np.ndarray:
    """JumpReLU thresholds (L, d_sae) for writing a TopK CLT: per layer, the mean over the tokens of x
    (batch, L, d_in) of each token's k-th largest activation, for every latent of the layer (BatchTopK's
    export rule, per layer), so the JumpReLU keeps about k latents a layer per token on such inputs."""
    codes, _ = clt_topk_codes(params, check_inputs(x, cfg), cfg, None)  # (batch, L, k), sorted descending
    cut = np.asarray(codes.vals[:, :, -1].mean(0), np.float32)  # (L,)
    return np.repeat(cut[:, None], cfg.d_sae, axis=1)


def save_transcoder_set(
    path: Path,
    layers: list[tuple[SAEParams, SAEConfig]],
    *,
    model_name: str,
    thresholds: list[np.ndarray] | None = None,
    **hooks,
) -> Path:
    """Write one transcoder per layer (layer order) in circuit-tracer's `transcoder_set` format; TopK-family
    transcoders need `thresholds` (one (d_sae,) array a layer), as in `save_clt`."""
    path.mkdir(parents=True, exist_ok=True)
    for l, (p, cfg) in enumerate(layers):
        check_params(p, cfg.d_in, cfg.d_sae, cfg.uses_threshold, cfg.resolved_d_out, cfg.has_skip)
        if not cfg.is_transcoder or cfg.d_in != cfg.resolved_d_out or cfg.apply_b_dec_to_input:
            raise ValueError(
                f"layer {l}: circuit-tracer's transcoders read and write d_model (d_in == d_out) without a pre-bias"
            )
        given = None if thresholds is None else thresholds[l]
        topk = cfg.architecture not in ("relu", "jumprelu")
        theta = _thresholds(topk, p.threshold, given, (cfg.d_sae,), f"layer {l}")
        t = {"W_enc": p.W_enc.T, "W_dec": p.W_dec, "b_enc": p.b_enc, "b_dec": p.b_dec}
        if theta is not None:
            t["activation_function.threshold"] = theta
        if p.W_skip is not None:
            t["W_skip"] = p.W_skip.T
        save_file(_numpy(t), str(path / f"layer_{l}.safetensors"))
    configs = [cfg.model_dump(mode="json") for _, cfg in layers]
    _write_cfg(path, "transcoder_set", model_name, {"configs": configs}, hooks)
    return path


def load(path: Path) -> CircuitTracerModel:
    """A circuit-tracer folder as saelab models (saelab's exports back as they were written)."""
    meta = yaml.safe_load((path / CFG_FILE).read_text())
    ours = meta.pop("saelab", None) or {}
    kind = meta.get("model_kind")
    if kind == "cross_layer_transcoder":
        if ours.get("provenance"):  # saelab's trained CLTs: model_name is the Hugging Face id, saelab_model its alias
            meta["provenance"] = ours["provenance"]
            meta["model_name"] = ours["provenance"].get("saelab_model") or meta.get("model_name")
        return CircuitTracerModel(kind, _load_clt(path, ours.get("config")), [], meta)
    if kind == "transcoder_set":
        n = len(list(path.glob("layer_*.safetensors")))
        configs = ours.get("configs") or [None] * n
        return CircuitTracerModel(kind, None, [_load_layer(path, l, configs[l]) for l in range(n)], meta)
    raise ValueError(f"{path / CFG_FILE}: model_kind {kind!r} is neither cross_layer_transcoder nor transcoder_set")


def _load_clt(path: Path, saved: dict | None) -> tuple[CLTParams, CLTConfig]:
    n = len(list(path.glob("W_enc_*.safetensors")))
    enc = [load_file(str(path / f"W_enc_{l}.safetensors")) for l in range(n)]
    dec = [load_file(str(path / f"W_dec_{l}.safetensors"))[f"W_dec_{l}"] for l in range(n)]
    d_sae, d_in = enc[0]["W_enc_0"].shape
    has_theta = "threshold_0" in enc[0]
    if saved is None:  # circuit-tracer's own: JumpReLU, or ReLU as JumpReLU at threshold 0
        saved = {"architecture": "clt", "activation": "jumprelu", "n_layers": n, "d_in": int(d_in)}
        saved |= {"d_sae": int(d_sae), "d_out": int(dec[0].shape[2])}
    cfg = sae_config(saved)
    theta = [e[f"threshold_{l}"] if has_theta else np.zeros(d_sae) for l, e in enumerate(enc)]
    f32 = lambda arrays: jnp.asarray(np.stack([np.asarray(a, np.float32) for a in arrays]))
    params = CLTParams(
        W_enc=f32([e[f"W_enc_{l}"].T for l, e in enumerate(enc)]),
        b_enc=f32([e[f"b_enc_{l}"] for l, e in enumerate(enc)]),
        W_dec=tuple(jnp.asarray(np.asarray(w, np.float32)) for w in dec),
        b_dec=f32([e[f"b_dec_{l}"] for l, e in enumerate(enc)]),
        threshold=f32(theta) if cfg.uses_threshold else None,
    )
    check_clt_params(params, cfg)
    check_clt_finite(params, str(path))
    return params, cfg


def _load_layer(path: Path, l: int, saved: dict | None) -> tuple[SAEParams, SAEConfig]:
    t = load_file(str(path / f"layer_{l}.safetensors"))
    d_sae, d_model = t["W_enc"].shape
    theta = t.get("activation_function.threshold")
    if saved is None:
        saved = {"architecture": "jumprelu", "d_in": int(d_model), "d_sae": int(d_sae), "d_out": int(d_model)}
        saved["skip"] = "W_skip" in t
    cfg = sae_config(saved)
    f32 = lambda a: jnp.asarray(np.asarray(a, np.float32))
    params = SAEParams(
        W_enc=f32(t["W_enc"].T),
        b_enc=f32(t["b_enc"]),
        W_dec=f32(t["W_dec"]),
        b_dec=f32(t["b_dec"]),
        threshold=(f32(theta if theta is not None else np.zeros(d_sae)) if cfg.uses_threshold else None),
        W_skip=f32(t["W_skip"].T) if cfg.has_skip else None,
    )
    check_params(params, cfg.d_in, cfg.d_sae, cfg.uses_threshold, cfg.resolved_d_out, cfg.has_skip)
    check_finite(params, f"{path} layer {l}")
    return params, cfg


def _thresholds(topk: bool, own: Any, given: Any, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    """The thresholds written: a TopK model's `given` ones (required), a threshold model's own; None for ReLU."""
    if topk:
        if given is None:
            raise ValueError(
                f"{what}: circuit-tracer has no TopK activation; pass thresholds {shape} (per-latent JumpReLU "
                "thresholds, e.g. each latent's smallest kept activation over a calibration batch)"
            )
        if tuple(np.shape(given)) != shape:
            raise ValueError(f"{what}: thresholds must have shape {shape}, got {np.shape(given)}")
        return np.asarray(given, np.float32)
    if given is not None:
        raise ValueError(f"{what}: has its own thresholds; pass thresholds only for a TopK model")
    return None if own is None else np.asarray(own, np.float32)


def _write_cfg(path: Path, kind: str, model_name: str, ours: dict, hooks: dict) -> None:
    unknown = set(hooks) - {"feature_input_hook", "feature_output_hook", "scan"}
    if unknown:
        raise TypeError(f"unknown keyword(s) {sorted(unknown)}")
    cfg = {
        "model_kind": kind,
        "model_name": model_name,
        "feature_input_hook": hooks.get("feature_input_hook", CT_INPUT_HOOK),
        "feature_output_hook": hooks.get("feature_output_hook", CT_OUTPUT_HOOK),
        "scan": hooks.get("scan", f"saelab/{path.name}"),
        "saelab": ours,
    }
    (path / CFG_FILE).write_text(yaml.safe_dump(cfg, sort_keys=False))


def _numpy(tensors: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in tensors.items()}
