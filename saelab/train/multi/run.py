"""`run(cfg)`: train several SAEs on the same batches in one run (`MultiTrainConfig`, a `[[saes]]` list).

Each batch is read from the store once per hook (or made by one forward of the model for every hook, on the
fly) and scaled once per input scale; one jitted step
(`saelab.train.stack`) updates every SAE, in the one loop a single-SAE run also uses (`saelab.train.loop`).
Each SAE still has everything a single run has, in its own run directory `train.out/train.name/<sae name>/`
(config.json, orbax checkpoints, metrics.jsonl, wandb, the SAELens-format export), so `saelab eval`,
`inspect` and `train --resume` take a sub-run as they take any run. The parent directory holds `multi.json`.
Resume is exact: every SAE restarts from the last step all of them checkpointed, with the loaders at that step.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from jax.sharding import Mesh

from saelab.runtime.rundir import RunDir
from saelab.sae import CLTConfig
from saelab.store import ActivationStore
from saelab.train.claim import claim_dir, prepare_run_dir
from saelab.train.config import Resolved, TrainConfig, resolve
from saelab.train.loop import Member, TrainResult, train
from saelab.train.mesh import check_divisible, make_mesh
from saelab.train.multi.config import MultiTrainConfig
from saelab.train.run import saved_stream
from saelab.train.source import Source, input_scale, store_loader, store_source
from saelab.train.stream_feed import Pair, open_sources


class MultiTrainResult(NamedTuple):
    run_dir: Path  # the parent directory (multi.json)
    saes: dict[str, TrainResult]  # each SAE's result, by its name, in config order
    steps: int
    tokens_per_s: float  # training tokens per second of the shared batches (compilation excluded)
    start_step: int = 0  # the step this invocation started from (the restored checkpoint's when resuming)


def run(
    cfg: MultiTrainConfig, *, resume: bool = False, overwrite: bool = False, stop_at_step: int | None = None
) -> MultiTrainResult:
    """Train (or continue with resume=True) the multi-SAE run `cfg.run_dir`. `stop_at_step` checkpoints and
    returns early, as an interruption would."""
    cfgs = cfg.members()
    rs = [resolve(c) for c in cfgs]
    if any(isinstance(r.sae, CLTConfig) for r in rs):
        raise ValueError(
            "a CLT trains alone (`saelab train` of a config whose [sae] architecture is 'clt'), not in [[saes]]"
        )
    _prepare_parent(RunDir(cfg.run_dir), cfg, resume, overwrite)
    dirs = [RunDir(c.run_dir) for c in cfgs]
    for d, c in zip(dirs, cfgs, strict=True):
        prepare_run_dir(d, c, resume, overwrite=False)
    mesh = make_mesh(cfg.train.mesh_data, cfg.train.mesh_model)
    for r in rs:
        check_divisible(mesh, r.sae.d_sae, cfg.data.batch_size)
    feed_of = [(r.hook, r.target_hook) for r in rs]
    feeds = list(dict.fromkeys(feed_of))  # each hook (and target) read once, in config order
    srcs = _sources(cfg, cfgs, rs, dirs, feed_of, feeds, mesh, resume)
    members = []
    for c, r, d, f, src in zip(cfgs, rs, dirs, feed_of, srcs, strict=True):
        scale = input_scale(src.stats, c.train.input_scaling, r.sae.d_in)
        out_scale = None
        if src.target_stats is not None:
            out_scale = input_scale(src.target_stats, c.train.input_scaling, r.sae.resolved_d_out)
        members.append(Member(c, r, d, src, feeds.index(f), scale, out_scale))
    loaders = [srcs[feed_of.index(f)].loader for f in feeds]
    title = f"train {cfg.train.name} ({len(cfgs)} SAEs)"
    out = train(members, loaders, mesh, title=title, resume=resume, stop_at_step=stop_at_step, stack_equal=cfg.stack)
    saes = {m.name: res for m, res in zip(cfg.saes, out.results, strict=True)}
    return MultiTrainResult(cfg.run_dir, saes, out.steps, out.tokens_per_s, out.start_step)


def _sources(
    cfg: MultiTrainConfig,
    cfgs: list[TrainConfig],
    rs: list[Resolved],
    dirs: list[RunDir],
    feed_of: list[Pair],
    feeds: list[Pair],
    mesh: Mesh,
    resume: bool,
) -> list[Source]:
    """Each SAE's source: from the store (one loader per feed), or from the model (one stream of every hook the
    feeds name, run once per forward batch for all of them)."""
    if cfg.data.source == "model":
        saved = saved_stream(dirs[0], cfgs[0]) if resume else None  # its statistics: the same in every SAE's
        by_feed = open_sources(cfg.data, feeds, cfg.data.batch_size, mesh, saved)
        return [by_feed[feeds.index(f)] for f in feed_of]
    store = ActivationStore(cfg.data.store)
    loaders = [store_loader(store, rs[feed_of.index(f)], cfgs[feed_of.index(f)], mesh) for f in feeds]
    return [store_source(store, loaders[feeds.index(f)], r, c) for r, c, f in zip(rs, cfgs, feed_of, strict=True)]


def _prepare_parent(parent: RunDir, cfg: MultiTrainConfig, resume: bool, overwrite: bool) -> None:
    """Check the parent directory on every process, then process 0 alone (re)creates it with multi.json."""
    if parent.is_run():
        raise ValueError(f"{parent.root} is a single-SAE run; give the multi-SAE run another train.name")
    claim_dir(parent.root, parent.multi_config, cfg.dump(), resume, overwrite, "multi-SAE run", "saelab-train-multi")
