"""`run(cfg)`: train one SAE on a store (or straight from the model; a cross-layer transcoder, `sae.architecture =
"clt"`, from the model's every layer at once), with checkpoints, metrics, tracking and a SAELens-format export
(a CLT's in circuit-tracer's format), all inside the run directory `checkpoints/<name>/` (its layout, the wandb id file
included: `saelab.runtime.rundir`). The training itself is the one-SAE case of the one loop
(`saelab.train.loop`).
"""

from __future__ import annotations

import json
from pathlib import Path

from saelab.runtime.rundir import RunDir
from saelab.sae import CLTConfig
from saelab.store import ActivationStore
from saelab.train import checkpoint
from saelab.train.claim import prepare_run_dir
from saelab.train.clt_feed import open_clt_source
from saelab.train.config import TrainConfig, resolve
from saelab.train.loop import Member, TrainResult, train
from saelab.train.mesh import check_divisible, make_mesh
from saelab.train.source import input_scale, store_loader, store_source
from saelab.train.stream_feed import open_sources


def run(
    cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, stop_at_step: int | None = None
) -> TrainResult:
    """Train (or continue with resume=True) the run `cfg.run_dir`. `stop_at_step` checkpoints and returns
    early, as an interruption would."""
    r = resolve(cfg)
    run_dir = RunDir(cfg.run_dir)
    prepare_run_dir(run_dir, cfg, resume, overwrite)
    mesh = make_mesh(cfg.train.mesh_data, cfg.train.mesh_model)
    check_divisible(mesh, r.sae.d_sae, cfg.data.batch_size)
    if isinstance(r.sae, CLTConfig):  # every layer's MLP input and output, stacked, each layer with its scales
        saved = saved_stream(run_dir, cfg) if resume else None
        clt = open_clt_source(cfg.data, r.sae, cfg.data.batch_size, mesh, cfg.train.input_scaling, saved)
        member = Member(cfg, r, run_dir, clt.source, 0, clt.in_scales, clt.out_scales)
        out = train(
            [member],
            [clt.source.loader],
            mesh,
            title=f"train CLT {cfg.train.name}",
            resume=resume,
            stop_at_step=stop_at_step,
        )
        return out.results[0]
    if cfg.data.source == "model":
        saved = saved_stream(run_dir, cfg) if resume else None
        src = open_sources(cfg.data, [(r.hook, r.target_hook)], cfg.data.batch_size, mesh, saved)[0]
    else:
        store = ActivationStore(cfg.data.store)
        src = store_source(store, store_loader(store, r, cfg, mesh), r, cfg)
    scale = input_scale(src.stats, cfg.train.input_scaling, r.sae.d_in)
    out_scale = None  # a transcoder's target is scaled by its own hook's statistics
    if src.target_stats is not None:
        out_scale = input_scale(src.target_stats, cfg.train.input_scaling, r.sae.resolved_d_out)
    member = Member(cfg, r, run_dir, src, 0, scale, out_scale)
    out = train([member], [src.loader], mesh, title=f"train {cfg.train.name}", resume=resume, stop_at_step=stop_at_step)
    return out.results[0]


def saved_stream(run_dir: RunDir, cfg: TrainConfig) -> dict | None:
    """The on-the-fly stream's state in the latest checkpoint (its input-scaling statistic is reused)."""
    mngr = checkpoint.manager(run_dir.checkpoints, cfg.train.keep_checkpoints)
    try:
        return checkpoint.restore_loader(mngr)
    finally:
        mngr.close()


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config a run was started with (what `saelab train --resume RUN` continues)."""
    f = RunDir(run_dir).config
    if not f.exists():
        raise FileNotFoundError(f"{run_dir} is not a training run (no {f.name})")
    return TrainConfig(**json.loads(f.read_text()))
