"""What every format loader shares: the load options and the step from NumPy tensors to a LoadedSAE.

A format module reads its files into float tensors with SAELens's names and shapes (W_enc (d_in, d_sae),
b_enc, W_dec (d_sae, d_in), b_dec, threshold), an SAEConfig, the metadata (hook_name, model_name, ...) and
the InputNorm; `build` checks shapes, folds a constant input scale into the weights (SAELens's
`fold_activation_norm_scaling_factor`), refuses a per-token normalisation unless asked for, and checks that
every weight is finite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from saelab.sae.config import ComputeDtype, SAEConfig
from saelab.sae.loaded import InputNorm, LoadedSAE
from saelab.sae.params import SAEParams, check_finite, check_params
from saelab.sae.scaling import fold_input_scaling


class LoadOptions(NamedTuple):
    """Choices a caller makes when loading an SAE (every one has the format's own default)."""

    norm_scaling_factor: float | None = None  # constant input scale s of expected_average_only_in
    runtime_norm: bool = False  # accept a per-token normalisation (use LoadedSAE.encode/decode then)
    compute_dtype: ComputeDtype | None = None  # override the matmul dtype the file's dtype implies
    metadata: Mapping[str, Any] = {}  # facts the files may not state (a registry's model_name); files win


DEFAULT = LoadOptions()


def compute_dtype_of(dtype: str | None, source: str) -> ComputeDtype:
    """saelab's matmul dtype for a stored dtype: SAELens runs bfloat16 SAEs in bfloat16, others in float32."""
    name = str(dtype or "float32").removeprefix("torch.")
    if name == "bfloat16":
        return "bfloat16"
    if name in ("float32", "float64", "float16"):
        return "float32"  # float16 weights upcast exactly; float32 matmuls are at least as precise
    raise ValueError(f"{source}: dtype {dtype!r} is not supported; supported: bfloat16, float16, float32, float64")


def build(
    tensors: Mapping[str, np.ndarray],
    cfg: SAEConfig,
    metadata: dict[str, Any],
    norm: InputNorm,
    fmt: str,
    opts: LoadOptions,
    source: str,
) -> LoadedSAE:
    """LoadedSAE from SAELens-named tensors, with the constant scale folded and everything checked."""
    if norm.runtime != "none" and not opts.runtime_norm:
        raise ValueError(
            f"{source}: normalize_activations={norm.declared!r} normalises each token at run time; saelab's "
            "eval, splice and inspect apply an SAE to raw activations and cannot honour it. Load it with "
            "load_sae(path, runtime_norm=True) and use LoadedSAE.encode / LoadedSAE.decode"
        )
    if opts.compute_dtype is not None:
        cfg = cfg.model_copy(update={"compute_dtype": opts.compute_dtype})
    f32 = lambda a: jnp.asarray(np.asarray(a, np.float32))
    thr = tensors.get("threshold")
    params = SAEParams(
        f32(tensors["W_enc"]),
        f32(tensors["b_enc"]),
        f32(tensors["W_dec"]),
        f32(tensors["b_dec"]),
        None if not cfg.uses_threshold else f32(np.broadcast_to(np.asarray(thr, np.float32), (cfg.d_sae,))),
        f32(tensors["W_skip"]) if cfg.has_skip else None,
    )
    try:
        check_params(params, cfg.d_in, cfg.d_sae, cfg.uses_threshold, cfg.resolved_d_out, cfg.has_skip)
    except ValueError as e:
        raise ValueError(f"{source}: {e} (the config says d_in={cfg.d_in}, d_sae={cfg.d_sae})") from e
    if norm.folded_scale is not None:
        params = fold_input_scaling(params, norm.folded_scale, mode="weights")
    check_finite(params, source)
    return LoadedSAE(params, cfg, {**opts.metadata, **{k: v for k, v in metadata.items() if v is not None}}, norm, fmt)
