"""SAELens directories (`cfg.json` + `sae_weights.safetensors`), saelab's own exports included.

Read as SAELens 6.x reads them (sae_lens/saes/sae.py, sae_lens/loading/pretrained_sae_loaders.py): the 6.x
layout keeps model and hook in a nested `metadata`, the older one at the top level with older names
(`hook_point`, `hook_point_head_index`, `activation_fn_str`, topk as `activation_fn_kwargs.k`, a boolean
`normalize_activations`). Every field that changes the math is honoured or refused:
- architecture standard / topk / jumprelu / batchtopk (gated has parameters SAEParams does not hold: refused);
- apply_b_dec_to_input; topk `k` and `rescale_acts_by_decoder_norm` (folded: W_enc, b_enc times the decoder
  row norms, W_dec divided by them, which leaves codes and reconstructions unchanged);
- normalize_activations: none; expected_average_only_in (a constant scale, folded into the weights like
  SAELens's fold_activation_norm_scaling_factor once its factor is known); constant_norm_rescale and
  layer_norm (per token, kept in LoadedSAE.norm);
- finetuning_scaling_factor (older SAELens scaled codes before decoding: folded into the W_dec rows);
- transcoders (transcoder, skip_transcoder, jumprelu_transcoder; saelab's TopK transcoder exports load through
  their saelab_config): d_out, hook_name_out, W_skip stored (d_out, d_in) as SAELens does;
- dtype (bfloat16 SAEs run bfloat16 matmuls, as in SAELens); hook_name, hook_head_index, prepend_bos and
  model_name go to metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from saelab.sae.config import DEFAULT_ARCHITECTURE, REGISTERED, SAEConfig
from saelab.sae.formats.base import DEFAULT, LoadOptions, build, compute_dtype_of
from saelab.sae.loaded import InputNorm, LoadedSAE
from saelab.sae.registry import ARCHITECTURES, sae_config

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
RENAMED = {"hook_point": "hook_name", "hook_point_head_index": "hook_head_index", "activation_fn_str": "activation_fn"}
META_KEYS = (
    "model_name", "hook_name", "hook_name_out", "hook_head_index", "context_size", "prepend_bos", "dataset_path"
)  # fmt: skip
NORMS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")
GATED = "gated SAEs carry b_gate, b_mag and r_mag, which saelab's SAEParams does not hold"


def detect(path: Path) -> bool:
    return (path / CFG_FILE).exists() and (path / WEIGHTS_FILE).exists()


def load(path: Path, opts: LoadOptions = DEFAULT) -> LoadedSAE:
    """An SAE from a SAELens-format directory (ours or SAELens's own)."""
    from safetensors.numpy import load_file

    for f in (CFG_FILE, WEIGHTS_FILE):
        if not (path / f).exists():
            raise FileNotFoundError(f"{path} is not a SAELens-format SAE directory: {f} is missing")
    raw = {RENAMED.get(k, k): v for k, v in json.loads((path / CFG_FILE).read_text()).items()}
    meta = {RENAMED.get(k, k): v for k, v in (raw.get("metadata") or {}).items()}
    for key in META_KEYS:  # older SAELens: top level
        if key in raw and key not in meta:
            meta[key] = raw[key]
    if meta.get("saelab_model"):  # saelab's exports: model_name is the Hugging Face id, this what saelab loads
        meta["model_name"] = meta["saelab_model"]
    ours = meta.pop("saelab_config", None)
    cfg = sae_config(_applicable(ours)) if ours is not None else _config(raw, path)
    if ours is None:
        cfg = cfg.model_copy(update={"compute_dtype": compute_dtype_of(raw.get("dtype"), str(path / CFG_FILE))})
    w = load_file(str(path / WEIGHTS_FILE))
    missing = [k for k in ("W_enc", "b_enc", "W_dec", "b_dec") if k not in w]
    if missing:
        raise ValueError(f"{path / WEIGHTS_FILE} lacks tensors {missing}")
    if cfg.uses_threshold and w.get("threshold") is None:
        raise ValueError(f"{path} is a {cfg.architecture} SAE without a threshold tensor")
    if cfg.has_skip and "W_skip" not in w:
        raise ValueError(f"{path} is a skip-transcoder without a W_skip tensor")
    w = {k: np.asarray(v, np.float32) for k, v in w.items()}
    if cfg.has_skip:
        w["W_skip"] = w["W_skip"].T  # SAELens stores (d_out, d_in)
    if raw.get("rescale_acts_by_decoder_norm"):
        n = np.linalg.norm(w["W_dec"], axis=1)  # (d_sae,)
        w |= {"W_enc": w["W_enc"] * n, "b_enc": w["b_enc"] * n, "W_dec": w["W_dec"] / n[:, None]}
    if raw.get("finetuning_scaling_factor"):
        if "finetuning_scaling_factor" not in w:
            raise ValueError(f"{path}: finetuning_scaling_factor=true but the weights lack that tensor")
        w["W_dec"] = w["W_dec"] * w["finetuning_scaling_factor"][:, None]
    norm = _norm(raw.get("normalize_activations"), opts.norm_scaling_factor, path)
    return build(w, cfg, meta, norm, "saelens", opts, str(path))


def _config(raw: dict[str, Any], path: Path) -> SAEConfig:
    """SAEConfig of a directory SAELens wrote (no saelab_config in its metadata)."""
    arch = raw.get("architecture", "standard")
    kwargs = raw.get("activation_fn_kwargs") or {}
    if raw.get("activation_fn") == "topk" and kwargs.get("k") is not None:  # SAELens < 6: topk as activation
        arch, raw = "topk", raw | {"k": kwargs["k"]}
    elif raw.get("activation_fn", "relu") not in ("relu", None) and arch == "standard":
        fn = raw["activation_fn"]
        raise ValueError(f"{path / CFG_FILE}: activation_fn={fn!r} is not supported; supported: relu, topk")
    mapping = {s: (a, False, False) for a in ARCHITECTURES.values() for s in a.saelens_imports}
    canonical = [
        a for a in ARCHITECTURES.values() if isinstance(a.saelens_name, str) and a.saelens_name in a.saelens_imports
    ]
    transcoders = {a.saelens_transcoder: (a, True, False) for a in canonical if a.saelens_transcoder}
    transcoders |= {a.saelens_skip_transcoder: (a, True, True) for a in canonical if a.saelens_skip_transcoder}
    mapping |= transcoders  # a transcoder class loads as the architecture that imports that class's SAE
    if arch not in mapping:
        why = f" ({GATED})" if arch == "gated" else ""
        raise ValueError(f"SAELens architecture {arch!r} in {path} is not supported; supported: {sorted(mapping)}{why}")
    if raw.get("reshape_activations", "none") not in ("none", "hook_z"):
        raise ValueError(f"{path / CFG_FILE}: reshape_activations={raw['reshape_activations']!r} is not supported")
    entry, transcoder, skip = mapping[arch]
    lacking = [key for key in entry.saelens_keys + (("d_out",) if transcoder else ()) if key not in raw]
    if lacking:
        raise ValueError(f"{path / CFG_FILE} lacks {lacking}, which a SAELens {arch} SAE needs")
    extra = {key: raw[key] for key in entry.saelens_keys}
    if transcoder:
        extra |= {"d_out": raw["d_out"], "skip": True} if skip else {"d_out": raw["d_out"]}
    return entry.config(
        d_in=raw["d_in"],
        d_sae=raw["d_sae"],
        apply_b_dec_to_input=raw.get("apply_b_dec_to_input", not transcoder),
        **extra,
    )


def _norm(value: Any, factor: float | None, path: Path) -> InputNorm:
    """The InputNorm of a normalize_activations value (booleans and null as older SAELens wrote them)."""
    value = {True: "expected_average_only_in", False: "none", None: "none"}.get(value, value)
    if value not in NORMS:
        raise ValueError(f"{path / CFG_FILE}: normalize_activations={value!r} is not supported; supported: {NORMS}")
    if value in ("constant_norm_rescale", "layer_norm"):
        return InputNorm(value, None, value)
    if value == "expected_average_only_in":
        if factor is None:
            raise ValueError(
                f"{path / CFG_FILE}: normalize_activations='expected_average_only_in' means the SAE was trained on "
                "activations times a dataset constant s = sqrt(d_in) / mean ||x||, which cfg.json does not hold. "
                "Pass it: load_sae(path, norm_scaling_factor=s) (SAELens's pretrained_saes.yaml lists it per "
                "SAE; load_pretrained(release, sae_id) uses it), or norm_scaling_factor=1.0 to use the weights "
                "as they are (what SAELens's load_from_disk does)"
            )
        return InputNorm("none", float(factor), value)
    if factor is not None:
        raise ValueError(f"{path / CFG_FILE}: norm_scaling_factor given, but normalize_activations is {value!r}")
    return InputNorm("none", None, value)


def _applicable(dumped: dict[str, Any]) -> dict[str, Any]:
    """A saved SAE config dump less the fields its architecture does not read, which its config class would
    reject as set (exports of the one flat config that preceded the per-architecture classes hold every
    architecture's fields)."""
    name = dumped.get("architecture", DEFAULT_ARCHITECTURE)
    if name not in ARCHITECTURES:
        return dumped  # sae_config names the unknown architecture
    keep = ARCHITECTURES[name].config.model_fields
    known = {f for c in REGISTERED.values() for f in c.model_fields}
    return {k: v for k, v in dumped.items() if k in keep or k not in known}
