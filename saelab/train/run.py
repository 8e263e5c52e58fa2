"""`run(cfg)`: train one SAE on a store, with checkpoints, metrics, tracking and a SAELens-format export,
all inside the run directory `checkpoints/<name>/` (its layout, the wandb id file included:
`saelab.runtime.rundir`).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from saelab.runtime.distributed import barrier, is_main, put, to_host
from saelab.runtime.finite import NonFiniteError
from saelab.runtime.progress import progress_bar
from saelab.runtime.rundir import RunDir
from saelab.sae import SAEConfig, SAEParams, check_finite, geometric_median, get_architecture, init_params
from saelab.store import ActivationLoader, ActivationStore
from saelab.train import checkpoint, stream
from saelab.train.config import Resolved, TrainConfig, resolve
from saelab.train.evaluate import InTrainingEval
from saelab.train.guard import Guard
from saelab.train.mesh import check_divisible, make_mesh, param_shardings
from saelab.train.sae_export import export
from saelab.train.state import TrainState, init_state, make_optimizer
from saelab.train.step import make_train_step

B_DEC_SAMPLE = 16384


class TrainResult(NamedTuple):
    run_dir: Path
    export_dir: Path
    steps: int
    metrics: dict[str, float]  # the last logged metrics
    tokens_per_s: float  # training throughput of this invocation (compilation excluded)
    params: SAEParams  # final parameters in the training (input-scaled) space, on the host
    start_step: int = 0  # the step this invocation started from (the restored checkpoint's when resuming)


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
    mngr = checkpoint.manager(run_dir.checkpoints, cfg.train.keep_checkpoints)
    if cfg.data.source == "model":
        src = stream.open_source(cfg, r.hook, mesh, checkpoint.restore_loader(mngr) if resume else None)
    else:
        src = _store_source(cfg, r, mesh)
    scale = input_scale(src.stats, cfg.train.input_scaling, r.sae.d_in)
    out_scale = None  # a transcoder's target is scaled by its own hook's statistics
    if src.target_stats is not None:
        out_scale = input_scale(src.target_stats, cfg.train.input_scaling, r.sae.resolved_d_out)
    b_dec = initial_b_dec(src.b_dec_sample, cfg, scale if out_scale is None else out_scale)
    state, tx = initial_state(r.sae, cfg, mesh, b_dec)
    shardings = jax.tree.map(lambda a: a.sharding, state)
    loader = src.loader
    start = 0
    if resume:
        restored = checkpoint.restore(mngr, state)
        if restored is not None:
            state, loader_state, start = restored
            loader.set_state(loader_state)
    step_fn = jax.jit(
        make_train_step(
            r.sae,
            tx,
            scale=scale,
            out_scale=out_scale,
            dead_tokens=cfg.train.dead_tokens,
            sparsity_warmup_steps=cfg.optim.coefficient_warmup_steps,
        ),
        donate_argnums=0,
        out_shardings=(shardings, None),
    )
    log = MetricsLog(run_dir, start, cfg)
    end = cfg.steps if stop_at_step is None else min(stop_at_step, cfg.steps)
    timer = Throughput()
    last: dict[str, float] = {}
    guard = make_guard(cfg, src, mngr)
    evaluate = InTrainingEval(cfg, r, scale, out_scale) if cfg.train.eval_every else None
    with progress_bar("step/s", cfg.train.progress and is_main()) as bar:
        task = bar.add_task(f"train {cfg.train.name}", total=cfg.steps, completed=start, info="")
        pending, fetched = [], []  # this log window's metrics: on the device, and those already on the host
        for s in range(start, end):
            batch = next(loader)
            state, m = step_fn(state, batch.x, batch.y)
            pending.append(m)
            timer.tick(s == start, cfg.data.batch_size)
            done = s + 1
            if done % cfg.train.log_every == 0 or done % cfg.train.checkpoint_every == 0 or done == end:
                fetched += guard.check(done - len(pending) + len(fetched), pending[len(fetched) :])
            if done % cfg.train.log_every == 0 or done == end:
                evals = evaluate(state.params) if evaluate and done % cfg.train.eval_every == 0 else {}
                state, last = log.write(done, fetched, state, cfg, timer.rate(), evals)
                pending, fetched = [], []
                bar.update(
                    task,
                    info=f"EV {last['explained_variance']:.3f} L0 {last['l0']:.1f} dead {last['dead_fraction']:.3f}",
                )
            if done % cfg.train.checkpoint_every == 0 or done == end:
                checkpoint.save(mngr, done, state, loader.get_state())
            bar.update(task, completed=done)
    mngr.wait_until_finished()
    host_params = to_host(state.params)  # gathered from every process when latents span processes
    check_finite(host_params, f"of run {run_dir.root} at step {end}")
    if end == cfg.steps and is_main():
        export(host_params, r, scale, run_dir.sae, cfg, out_scale)
    log.close()
    return TrainResult(run_dir.root, run_dir.sae, end, last, timer.rate(), host_params, start)


def initial_state(
    sae: SAEConfig, cfg: TrainConfig, mesh: Mesh, b_dec: jax.Array | None = None
) -> tuple[TrainState, optax.GradientTransformation]:
    """The step-0 train state on `mesh` and its optimiser: parameters sharded by PARAM_SPECS, Adam moments
    like them, latent bookkeeping over `model`, the rest replicated (`saelab plan` sizes exactly this)."""
    unit_norm = cfg.train.unit_norm_decoder
    if unit_norm is None:
        unit_norm = get_architecture(sae.architecture).unit_norm_decoder
    key = jax.random.key(cfg.train.seed)
    params = init_params(key, sae, b_dec=b_dec)
    params = put(params, param_shardings(mesh, params))
    tx = make_optimizer(cfg.optim, cfg.steps, unit_norm)
    return _place(init_state(params, tx, key), mesh), tx


def input_scale(stats: dict[str, Any], mode: str, d_in: int) -> float:
    """The scalar that makes the mean squared norm (BOS excluded) d_in ("sqrt_d") or 1 ("unit")."""
    if mode == "none":
        return 1.0
    msq = stats["mean_sq_norm_no_bos"] or stats["mean_sq_norm"]
    return float(np.sqrt((d_in if mode == "sqrt_d" else 1.0) / msq))


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config a run was started with (what `saelab train --resume RUN` continues)."""
    f = RunDir(run_dir).config
    if not f.exists():
        raise FileNotFoundError(f"{run_dir} is not a training run (no {f.name})")
    return TrainConfig(**json.loads(f.read_text()))


def wandb_run_id(run_dir: RunDir, name: str) -> str:
    """The wandb run id of `run_dir`, made once per run: a resumed run continues its wandb run, while a run
    re-created with --overwrite (its directory, this file included, is removed) starts a new one instead of
    appending to the old run's history under the same id."""
    f = run_dir.wandb_id
    if f.exists():
        return f.read_text().strip()
    if run_dir.wandb.is_dir():  # a run started before ids were kept: its wandb id was the run name
        run_id = name.replace("/", "-")
    else:
        run_id = f"{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}-{secrets.token_hex(4)}"
    f.write_text(run_id + "\n")
    return run_id


def check_store_stats(store: ActivationStore, hook: str) -> None:
    """Refuse a store whose statistics count NaN/Inf activations: the input scale and every step would be NaN."""
    st = store.stats(hook)
    if st.get("n_nonfinite") or not np.isfinite(st.get("mean_sq_norm", 0.0)):
        raise NonFiniteError(
            f"store {store.path} holds {st.get('n_nonfinite', 'some')} NaN/Inf activation values in hook {hook} "
            f"(its statistics say so); `saelab store verify --deep {store.path}` names the shards and rows. "
            "Re-harvest it (with model_dtype='float32' and dtype='float32' if bfloat16 overflowed)"
        )


def _store_source(cfg: TrainConfig, r: Resolved, mesh: Mesh) -> stream.Source:
    """Globally shuffled batches of the store `cfg.data.store` (its statistics checked first)."""
    store = ActivationStore(cfg.data.store)
    for hook in (r.hook, r.target_hook):
        if hook is not None:
            check_store_stats(store, hook)
    loader = ActivationLoader(
        store,
        r.hook,
        cfg.data.batch_size,
        seed=cfg.data.seed,
        include_bos=cfg.data.include_bos,
        mesh=mesh,
        dtype=store.activations(r.hook).dtype,  # as stored: the step casts on the device
        target_hook=r.target_hook,
    )
    return store_source(store, loader, r, cfg)


def store_source(store: ActivationStore, loader: ActivationLoader, r: Resolved, cfg: TrainConfig) -> stream.Source:
    """The trainer's view of `loader`'s batches of `store` at `r.hook` (stats, b_dec sample, fault rows)."""
    view = store.activations(r.hook)

    def bad_rows(rows: np.ndarray) -> np.ndarray:
        return rows[~np.isfinite(view.take(rows, np.float32)).all(1)]

    target_stats = None if r.target_hook is None else store.stats(r.target_hook)
    sample = partial(store_sample, store, r, cfg)
    return stream.Source(loader, store.stats(r.hook), sample, loader.global_indices, bad_rows, target_stats)


def make_guard(cfg: TrainConfig, src: stream.Source, mngr) -> Guard:
    """The fault checks of this run: which rows a step read, which of them are not finite, what is kept."""

    def kept() -> str:
        mngr.wait_until_finished()  # the checkpoint in flight, if any, is whole before the run stops
        step = mngr.latest_step()
        if step is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint (step {step}) is kept"

    return Guard(cfg.train.on_nonfinite, src.rows, src.bad_rows, kept)


def prepare_run_dir(run_dir: RunDir, cfg: TrainConfig, resume: bool, overwrite: bool) -> None:
    """Check the run dir on every process (same errors everywhere), then process 0 alone (re)creates it."""
    claim_dir(run_dir.root, run_dir.config, cfg.model_dump(mode="json"), resume, overwrite, "run", "saelab-train")


def claim_dir(
    root: Path, f: Path, resolved: dict[str, Any], resume: bool, overwrite: bool, what: str, tag: str
) -> None:
    """The directory `root` of a run whose resolved config is the JSON file `f`: resuming needs the same config,
    an existing run needs --resume or --overwrite; process 0 alone (re)creates it, and the barriers (named
    `tag`) keep a process from seeing the config another one has just written."""
    fresh = True
    if f.exists():
        if resume:
            if json.loads(f.read_text()) != resolved:
                raise ValueError(
                    f"{what} {root} was started with another config; resume it with "
                    f"`saelab train --resume {root}` and no changes"
                )
            fresh = False
        elif not overwrite:
            raise ValueError(
                f"run {root} exists; continue it with `saelab train --resume {root}`, pick "
                "another train.name, or pass --overwrite to start it again"
            )
    barrier(f"{tag}-check")
    if fresh and is_main():
        if f.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(resolved, indent=2))
    barrier(f"{tag}-prepared")


def initial_b_dec(sample, cfg: TrainConfig, scale: float) -> jax.Array | None:
    """The initial decoder bias from the source's sample (None on resume: the checkpoint holds b_dec)."""
    x = None if cfg.train.b_dec_init == "zeros" else sample()
    if x is None:
        return None
    rng = np.random.default_rng(cfg.train.seed)
    if len(x) > B_DEC_SAMPLE:
        x = x[np.sort(rng.choice(len(x), size=B_DEC_SAMPLE, replace=False))]
    x = jnp.asarray(x) * scale
    return geometric_median(x) if cfg.train.b_dec_init == "geometric_median" else x.mean(0)


def store_sample(store: ActivationStore, r: Resolved, cfg: TrainConfig) -> np.ndarray:
    """Up to B_DEC_SAMPLE finite store rows (raw), drawn with the init seed."""
    idx = store.train_indices(cfg.data.include_bos)
    rng = np.random.default_rng(cfg.train.seed)
    sample = np.sort(rng.choice(idx, size=min(B_DEC_SAMPLE, len(idx)), replace=False))
    x = store.activations(r.target_hook or r.hook).take(sample, np.float32)  # b_dec is in the output space
    finite = np.isfinite(x).all(1)
    if not finite.all() and cfg.train.on_nonfinite == "error":
        shown = ", ".join(str(int(i)) for i in sample[~finite][:8])
        raise NonFiniteError(
            f"store {store.path} holds NaN/Inf activations at rows {shown} ({int((~finite).sum())} of the "
            f"{len(sample)} sampled for the initial b_dec); `saelab store verify --deep {store.path}` names every "
            "shard and row. Re-harvest it, or set train.on_nonfinite='skip' to train around such rows"
        )
    return x[finite]


def _place(state: TrainState, mesh) -> TrainState:
    """Shard latent-sized bookkeeping over `model`; leaves not yet on the mesh (optimiser counts, scalars) are
    replicated; params and the moments made from them keep their shardings."""
    rep = NamedSharding(mesh, P())
    lat = NamedSharding(mesh, P("model"))
    on_mesh = lambda a: a if isinstance(a.sharding, NamedSharding) and a.sharding.mesh == mesh else put(a, rep)
    state = jax.tree.map(on_mesh, state)
    return state._replace(since_fired=put(state.since_fired, lat), window_counts=put(state.window_counts, lat))


class Throughput:
    """Tokens per second, excluding the first (compiling) step."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.tokens = 0

    def tick(self, first: bool, batch: int) -> None:
        if first:
            return
        if self.t0 is None:
            self.t0 = time.perf_counter()
            return
        self.tokens += batch

    def rate(self) -> float:
        return self.tokens / (time.perf_counter() - self.t0) if self.t0 and self.tokens else 0.0


class MetricsLog:
    """metrics.jsonl (truncated to the restored step on resume, so a resumed log equals an uninterrupted
    one) and wandb."""

    def __init__(self, run_dir: RunDir, start: int, cfg: TrainConfig) -> None:
        self.main = is_main()
        self.path = run_dir.metrics
        self.wandb = None
        if not self.main:
            return
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        self.path.write_text("".join(l + "\n" for l in lines if json.loads(l)["step"] <= start))
        if cfg.train.wandb != "disabled":
            import wandb

            self.wandb = wandb.init(
                project="saelab",
                name=cfg.train.name,
                id=wandb_run_id(run_dir, cfg.train.name),
                dir=str(run_dir.wandb.parent),
                mode=cfg.train.wandb,
                resume="allow",
                config=cfg.model_dump(mode="json"),
                settings=wandb.Settings(quiet=True),
            )

    def write(
        self, step: int, host: list[dict], state: TrainState, cfg: TrainConfig, rate: float, evals: dict | None = None
    ):
        """Average the window's per-step metrics (fetched by the loop) over the steps applied, count the
        skipped ones, add the dense fraction and the held-out `evals` of this step, log, and reset the window
        counts."""
        applied = [m for m in host if not m["nonfinite"]] or host
        row = {k: float(np.mean([m[k] for m in applied])) for k in host[0] if k != "nonfinite"}
        row["skipped_batches"] = int(sum(m["nonfinite"] for m in host))
        window = float(len(host) * cfg.data.batch_size)
        counts = to_host(state.window_counts)
        row |= {
            "step": step,
            "tokens": step * cfg.data.batch_size,
            "tokens_per_s": rate,
            "dense_fraction": float(np.mean(counts / window > cfg.train.dense_threshold)),
        }
        row |= evals or {}
        state = state._replace(window_counts=put(np.zeros(counts.shape, np.float32), state.window_counts.sharding))
        if self.main:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
            if self.wandb is not None:
                self.wandb.log(row, step=step)
        return state, row

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
