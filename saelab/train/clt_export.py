"""A trained cross-layer transcoder leaving its run: written in circuit-tracer's format (`RUN/sae/`), for raw
activations (each layer's input and output scale folded into the weights), with the JumpReLU thresholds a TopK
CLT is written with calibrated on the run's last training batch (`topk_thresholds`: per layer, the mean k-th
largest activation), so that circuit-tracer runs it and `saelab eval RUN` splices it in as a replacement model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from saelab.models.aliases import hf_id
from saelab.sae import CLTConfig, CLTParams
from saelab.sae.clt_train import fold_clt_scaling
from saelab.sae.formats.circuit_tracer import save_clt, topk_thresholds
from saelab.train.config import Resolved, TrainConfig


def export_clt(
    params: CLTParams,
    r: Resolved,
    in_scales: Sequence[float],
    out_scales: Sequence[float],
    out: Path,
    cfg: TrainConfig,
    calibration: Callable[[], Any] | None,
) -> Path:
    """Fold the per-layer scales into `params` (trained on scaled activations) and write the CLT to `out`;
    `calibration()` gives raw MLP inputs (batch, L, d_in) to calibrate a TopK CLT's thresholds on."""
    sae: CLTConfig = r.sae
    folded = fold_clt_scaling(jax.device_get(params), in_scales, out_scales)
    thresholds = None
    if sae.activation == "topk":
        x = None if calibration is None else calibration()
        if x is None:
            raise ValueError("a TopK CLT's export calibrates its JumpReLU thresholds on a batch; none was drawn")
        thresholds = topk_thresholds(folded, jnp.asarray(x, jnp.float32), sae)
    meta = r.manifest["meta"]
    provenance = {
        "saelab_model": meta["model"],  # what saelab loads (circuit-tracer's model_name is the Hugging Face id)
        "weights_hash": meta.get("weights_hash"),
        "corpus": meta.get("corpus"),
        "context_size": meta.get("context"),
        "training_tokens": cfg.steps * cfg.data.batch_size,
        "input_scales_folded": list(in_scales),
        "output_scales_folded": list(out_scales),
        "thresholds": "calibrated on the last training batch (topk_thresholds)" if thresholds is not None else None,
        "run": str(cfg.run_dir),
    }
    return save_clt(out, folded, sae, model_name=hf_id(meta["model"]), thresholds=thresholds, provenance=provenance)
