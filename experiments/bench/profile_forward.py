"""Where the forward to layer L spends its time, per op, in saelab and in transformers on the same tokens.

saelab's side is the jitted forward `forward.py` times (`Model.run_with_cache(..., stop_at_layer="auto")`) under
`jax.profiler.trace`: every XLA op's durations summed over the profiled calls and the threads that ran it (as
`profile_step.py` reads them; an op split over both cores counts both cores' time). transformers' side is its
forward with a hook that raises at layer L (the early exit of `forward.py`) under `torch.profiler`, each aten op's
self CPU time. Printed per side: the median call and the ops taking the most time, with their share. The compiled
HLO of saelab's forward is written next to the JSON (`results/bench/profile_forward/jax_hlo.txt`), to name what
each XLA fusion computes; `XLA_FLAGS` set in the environment apply (the JSON records them).

    python experiments/bench/profile_forward.py [--quick] [--reps 5] [--top 15] [--layer 6] [--batch 16]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, StopForward, docstring_tokens, finish, parser, torch_model  # noqa: E402
from profile_step import newest, op_times  # noqa: E402


def jax_side(model, tokens, layer: int, reps: int, out: Path) -> dict:
    """Median seconds and per-op microseconds per call of saelab's forward to `layer`; writes its HLO."""
    import jax
    import jax.numpy as jnp

    hook = f"blocks.{layer}.hook_resid_post"
    toks = jnp.asarray(tokens)

    def call():
        _, cache = model.run_with_cache(toks, [hook], stop_at_layer="auto")
        jax.block_until_ready(cache[hook])

    for _ in range(2):
        call()
    out.mkdir(parents=True, exist_ok=True)
    (out / "jax_hlo.txt").write_text(compiled_hlo(model, toks, hook))
    times = []
    with jax.profiler.trace(str(out / "jax"), create_perfetto_trace=True):
        for _ in range(reps):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
    ops = op_times(newest(out / "jax"))
    return {"call_s": statistics.median(times), "ops_us_per_call": {k: v / reps for k, v in ops.items()}}


def compiled_hlo(model, toks, hook: str) -> str:
    """The optimised HLO of the forward `run_with_cache` compiles for these tokens and this hook."""
    from saelab.models.hooks import stop_layer
    from saelab.models.inputs import resolve
    from saelab.models.model import _cached_forward

    t = resolve(model, toks, None, True)
    run = _cached_forward(model.cfg, (hook,), stop_layer([hook], model.cfg.n_layers))
    return run.lower(model.params, toks, t.pad_mask).compile().as_text()


def torch_side(name: str, tokens, layer: int, reps: int) -> dict:
    """Median seconds and per-op self CPU microseconds per call of transformers' early-exit forward."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    hf = torch_model(name)

    def stop(_m, _i, _o):
        raise StopForward

    handle = hf.model.layers[layer].register_forward_hook(stop)
    tt = torch.tensor(tokens, dtype=torch.long)

    def call():
        with torch.inference_mode():
            try:
                hf(input_ids=tt)
            except StopForward:
                pass

    call()
    times = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
    handle.remove()
    ops = {e.key: e.self_cpu_time_total / reps for e in prof.key_averages()}
    return {"call_s": statistics.median(times), "ops_us_per_call": ops, "threads": torch.get_num_threads()}


def show(side: str, res: dict, top: int) -> None:
    ops = sorted(res["ops_us_per_call"].items(), key=lambda kv: -kv[1])
    busy = sum(v for _, v in ops)
    print(f"== {side}: call {1e3 * res['call_s']:.1f} ms (median), ops {busy / 1e3:.1f} ms of thread time")
    for op, us in ops[:top]:
        print(f"   {us / 1e3:8.2f} ms  {100 * us / busy:5.1f}%  {op}")


def main() -> None:
    ap = parser(__doc__, "profile_forward", "2 profiled calls", reps=5, top=15, layer=6, batch=16, context=128)
    a = ap.parse_args()
    reps = 2 if a.quick else a.reps
    from saelab.models import Model

    model = Model.load(a.model)
    tokens = docstring_tokens(model.tokenizer, a.batch * a.context).reshape(a.batch, a.context)
    out = RESULTS / "profile_forward"
    result = {"layer": a.layer, "batch": a.batch, "context": a.context, "reps": reps}
    result["jax"] = jax_side(model, tokens, a.layer, reps, out)
    result["torch"] = torch_side(a.model, tokens, a.layer, reps)
    for side in ("jax", "torch"):
        show(side, result[side], a.top)
    n = a.batch * a.context
    finish(
        a,
        result,
        jax_ms=1e3 * result["jax"]["call_s"],
        torch_ms=1e3 * result["torch"]["call_s"],
        ratio_jax_vs_torch=(n / result["jax"]["call_s"]) / (n / result["torch"]["call_s"]),
    )


if __name__ == "__main__":
    main()
