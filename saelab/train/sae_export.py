"""A trained SAE leaving its run: the SAELens-format export written when training ends (input scaling folded
into the weights, provenance in its metadata; a CLT's in circuit-tracer's format), and `saelab train export`'s
copy of it elsewhere."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from saelab.models.aliases import hf_id
from saelab.runtime.rundir import RunDir
from saelab.sae import CLTParams, SAEParams, check_finite, fold_input_scaling
from saelab.sae.clt_train import check_clt_finite
from saelab.sae.formats import circuit_tracer
from saelab.sae.saelens_io import CFG_FILE, save_saelens
from saelab.train.config import Resolved, TrainConfig
from saelab.train.step import Scale


def export(
    params: SAEParams | CLTParams,
    r: Resolved,
    scale: Scale,
    out: Path,
    cfg: TrainConfig,
    out_scale: Scale | None = None,
    calibration: Callable[[], Any] | None = None,
) -> Path:
    """Fold the input scaling (a transcoder's target scale too) into the weights and write the SAELens-format
    SAE to `out`; a CLT (per-layer scales) in circuit-tracer's format (saelab.train.clt_export), calibrated on
    `calibration()`'s raw inputs."""
    if isinstance(params, CLTParams):
        from saelab.train.clt_export import export_clt

        return export_clt(params, r, scale, out_scale, out, cfg, calibration)
    folded = fold_input_scaling(jax.device_get(params), scale, out_scale=out_scale)
    transcoder = {} if r.target_hook is None else {"hook_name_out": r.target_hook, "output_scale_folded": out_scale}
    meta = r.manifest["meta"]
    return save_saelens(
        out,
        folded,
        r.sae,
        {
            "model_name": hf_id(meta["model"]) if meta.get("model") else None,  # what SAELens loads
            "saelab_model": meta.get("model"),  # what saelab loads (an alias: the model the store was made of)
            "hook_name": r.hook,
            "context_size": meta.get("context"),
            "prepend_bos": True,
            "dataset_path": str(cfg.data.store) if cfg.data.source == "store" else None,
            "weights_hash": meta.get("weights_hash"),
            "model_processing": meta.get("model_processing", "none"),
            "corpus": meta.get("corpus"),
            "training_tokens": cfg.steps * cfg.data.batch_size,
            "input_scale_folded": scale,
            "run": str(cfg.run_dir),
            **transcoder,
        },
    )


def check_trained_finite(params: SAEParams | CLTParams, where: str) -> None:
    """NonFiniteError naming the first non-finite tensor of trained parameters, an SAE's or a CLT's."""
    (check_clt_finite if isinstance(params, CLTParams) else check_finite)(params, where)


def copy_export(run: str | Path, out: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """The run's SAELens-format SAE, copied to `out` when given (default: where it is, RUN/sae)."""
    src = RunDir(run).sae
    if not ((src / CFG_FILE).exists() or circuit_tracer.detect(src)):  # a CLT's is in circuit-tracer's format
        raise FileNotFoundError(
            f"{run} has no finished export ({src}); finish training first (saelab train --resume {run})"
        )
    dest = Path(out) if out else src
    if dest != src:
        if dest.exists() and not overwrite:
            raise ValueError(f"{dest} exists; pass --overwrite or choose another --out")
        shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest
