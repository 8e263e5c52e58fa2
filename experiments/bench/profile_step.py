"""Where a train step's time goes, per XLA op: saelab's real jitted train step (loss, gradients, Adam, dead-latent
counts; `saelab.train.step.make_train_step`) of the TopK, BatchTopK and JumpReLU SAEs of experiments/sae-*.toml
(4,608 latents, batch 4096): TopK with each `topk_select` (the default "auto"; then "lax", XLA's own kernels
with SAELAB_CPU_KERNELS=0, the step before saelab's CPU kernels; "native"; "screened"), BatchTopK with "auto"
and "lax" (SAELAB_CPU_KERNELS=0), JumpReLU. saelab's CPU kernels appear as `ffi_call` ops.

Each variant runs `--reps` steps under `jax.profiler.trace`; the Perfetto trace it writes is read back and every
op's durations are summed over the steps and the threads that ran it (so an op split over both cores counts
both cores' time). Printed per variant: the median step time and the ops taking the most time, each with its
share; the JSON holds every op. The traces stay in results/bench/profile_step/ for Perfetto (ui.perfetto.dev).
Batches are Gaussian at the input scale's norm (the op times do not depend on the data beyond the dead mask).

    python experiments/bench/profile_step.py [--quick] [--reps 5] [--top 12] [--expansion 8]
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, finish, parser  # noqa: E402

from saelab import train  # noqa: E402
from saelab.sae import cpu_kernels  # noqa: E402
from saelab.train.mesh import make_mesh  # noqa: E402
from saelab.train.placement import initial_state  # noqa: E402
from saelab.train.step import make_train_step  # noqa: E402

EXPERIMENTS = Path(__file__).resolve().parents[1]
VARIANTS = {  # name: (config, overrides, SAELAB_CPU_KERNELS)
    "topk-auto": ("sae-topk.toml", [], "1"),
    "topk-xla": ("sae-topk.toml", ["sae.topk_select='lax'"], "0"),
    "topk-native": ("sae-topk.toml", ["sae.topk_select='native'"], "1"),
    "topk-screened": ("sae-topk.toml", ["sae.topk_select='screened'"], "1"),
    "batchtopk-auto": ("sae-batchtopk.toml", [], "1"),
    "batchtopk-xla": ("sae-batchtopk.toml", ["sae.topk_select='lax'"], "0"),
    "jumprelu": ("sae-jumprelu.toml", [], "1"),
}


def profile(name: str, toml: str, overrides: list[str], kernels: str, reps: int, expansion: int, traces: Path) -> dict:
    """Median step seconds and per-op summed microseconds of `reps` profiled steps of one variant."""
    os.environ["SAELAB_CPU_KERNELS"] = kernels  # read when the step is traced
    cfg = train.load_config(EXPERIMENTS / toml, [*overrides, f"sae.expansion={expansion}", "train.wandb='disabled'"])
    r = train.resolve(cfg)
    state, tx = initial_state(r.sae, cfg, make_mesh())
    step = jax.jit(
        make_train_step(r.sae, tx, scale=1.0, dead_tokens=cfg.train.dead_tokens, sparsity_warmup_steps=0),
        donate_argnums=0,
    )
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.normal(size=(cfg.data.batch_size, r.sae.d_in)).astype(np.float32))
    for _ in range(2):  # compile, then one warm step
        state, m = step(state, x)
    jax.block_until_ready(m)
    times = []
    out = traces / name
    with jax.profiler.trace(str(out), create_perfetto_trace=True):
        for _ in range(reps):
            t = time.perf_counter()
            state, m = step(state, x)
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t)
    ops = op_times(newest(out))
    return {"step_s": statistics.median(times), "ops_us_per_step": {k: v / reps for k, v in ops.items()}}


def newest(root: Path) -> Path:
    """The Perfetto trace the last profiling session wrote under `root`."""
    found = sorted(root.glob("**/*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"jax.profiler wrote no *.trace.json.gz under {root}")
    return found[-1]


def op_times(path: Path) -> dict[str, float]:
    """Microseconds per XLA op name, summed over the trace's events on XLA's executor and compute threads."""
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    total: collections.Counter[str] = collections.Counter()
    for e in events:
        thread = names.get((e.get("pid"), e.get("tid")), "")
        if e.get("ph") == "X" and thread.startswith("tf_XLA") and not e["name"].startswith(("ThunkExecutor", "end:")):
            total[e["name"]] += e.get("dur", 0.0)
    return dict(total)


def main() -> None:
    ap = parser(__doc__, "profile_step", "2 profiled steps, TopK variants only", reps=5, top=12, expansion=8)
    a = ap.parse_args()
    reps = 2 if a.quick else a.reps
    variants = {k: v for k, v in VARIANTS.items() if not a.quick or k.startswith("topk")}
    if not cpu_kernels.enabled():  # a GPU, or no C++ compiler: the selections that need the kernels are skipped
        print("saelab's CPU kernels do not serve this process: topk-native and topk-screened are skipped")
        variants = {k: v for k, v in variants.items() if k not in ("topk-native", "topk-screened")}
    traces = RESULTS / "profile_step"
    result: dict = {"reps": reps, "expansion": a.expansion, "variants": {}}
    for name, (toml, overrides, kernels) in variants.items():
        res = profile(name, toml, overrides, kernels, reps, a.expansion, traces)
        result["variants"][name] = res
        ops = sorted(res["ops_us_per_step"].items(), key=lambda kv: -kv[1])
        busy = sum(v for _, v in ops)
        print(f"== {name}: step {1e3 * res['step_s']:.1f} ms (median), ops {busy / 1e3:.1f} ms of thread time")
        for op, us in ops[: a.top]:
            print(f"   {us / 1e3:8.2f} ms  {100 * us / busy:5.1f}%  {op}")
    steps = {f"{k}_ms": 1e3 * v["step_s"] for k, v in result["variants"].items()}
    finish(a, result, **{k.replace("-", "_"): v for k, v in steps.items()})


if __name__ == "__main__":
    main()
