"""Top-k selection: saelab's exact block top-k (`topk_select = "blocks"`) against `jax.lax.top_k`.

Two measurements at the demo's shapes (batch 4096, k 32, d_model 576; widths 4,608 / 9,216 / 18,432 latents):
1. the selection alone on (batch, d_sae) pre-activations drawn like an SAE's (Gaussian), both methods
   alternating in blocks of reps on the same array (the ratio robust to a busy machine), after checking that
   both return the same values and indices;
2. a whole TopK training step (`jax.value_and_grad` of the TopK loss: sparse kernels, AuxK with a quarter of
   the latents dead) with each method, alternating the same way.
`ratio` is lax's median time over the block method's: above 1 the blocks are faster. The RESULT line gives
the ratios at the widest width measured.

    python experiments/bench/topk.py [--quick] [--batch 4096] [--k 32] [--d-in 576] [--reps 5]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import finish, parser  # noqa: E402

from saelab.sae import AuxState, SAEParams, loss, sae_config  # noqa: E402
from saelab.sae.topk_select import block_width, select_top_k  # noqa: E402

METHODS = ("lax", "blocks")


def interleaved(fns: dict[str, callable], reps: int, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Median and min seconds of each of `fns` (called with no arguments), alternating rounds of `reps`
    runs each after one warm-up call, so that load changes hit both alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        jax.block_until_ready(fn())
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(reps):
                t = time.perf_counter()
                jax.block_until_ready(fn())
                times[name].append(time.perf_counter() - t)
    return {n: {"median_s": statistics.median(t), "min_s": min(t), "runs": len(t)} for n, t in times.items()}


def bench_select(batch: int, d_sae: int, k: int, reps: int) -> dict:
    """The selection alone, both methods on the same (batch, d_sae) array; checks they agree first."""
    pre = jax.random.normal(jax.random.key(0), (batch, d_sae), jnp.float32)
    fns = {m: jax.jit(lambda a, m=m: select_top_k(a, k, m)) for m in METHODS}
    (v0, i0), (v1, i1) = fns["lax"](pre), fns["blocks"](pre)
    if not (np.array_equal(np.asarray(i0), np.asarray(i1)) and np.array_equal(np.asarray(v0), np.asarray(v1))):
        raise AssertionError(f"block top-k differs from lax.top_k at d_sae={d_sae}")
    t = interleaved({m: (lambda f=f: f(pre)) for m, f in fns.items()}, reps)
    return {**t, "ratio": t["lax"]["median_s"] / t["blocks"]["median_s"], "block_width": block_width(d_sae, k)}


def bench_step(batch: int, d_in: int, d_sae: int, k: int, reps: int) -> dict:
    """value_and_grad of the TopK loss (sparse kernels, AuxK on) with each method, on the same batch."""
    r = np.random.default_rng(0)
    f = lambda *s, scale=1.0: jnp.asarray(r.normal(size=s) * scale, jnp.float32)
    params = SAEParams(f(d_in, d_sae, scale=d_in**-0.5), f(d_sae, scale=0.1), f(d_sae, d_in, scale=0.1), f(d_in), None)
    x, aux = f(batch, d_in), AuxState(jnp.arange(d_sae) % 4 == 0, jnp.float32(1.0))
    fns = {}
    for m in METHODS:
        cfg = sae_config(architecture="topk", d_in=d_in, d_sae=d_sae, k=k, topk_select=m)
        step = jax.jit(jax.value_and_grad(lambda p, c=cfg: loss(p, x, c, aux), has_aux=True))
        fns[m] = lambda s=step: s(params)
    t = interleaved(fns, reps)
    return {**t, "ratio": t["lax"]["median_s"] / t["blocks"]["median_s"]}


def main() -> None:
    ap = parser(__doc__, "topk", "one width (4,608), 3 reps per round", batch=4096, k=32, d_in=576, reps=5)
    args = ap.parse_args()
    widths = (8 * args.d_in,) if args.quick else (8 * args.d_in, 16 * args.d_in, 32 * args.d_in)
    reps = 3 if args.quick else args.reps
    result: dict = {"batch": args.batch, "k": args.k, "d_in": args.d_in, "select": {}, "step": {}}
    for d_sae in widths:
        sel = bench_select(args.batch, d_sae, args.k, reps)
        step = bench_step(args.batch, args.d_in, d_sae, args.k, reps)
        result["select"][str(d_sae)], result["step"][str(d_sae)] = sel, step
        lax_ms, blk_ms = 1e3 * sel["lax"]["median_s"], 1e3 * sel["blocks"]["median_s"]
        print(f"d_sae {d_sae}: top-k lax {lax_ms:.1f} ms, blocks {blk_ms:.1f} ms (x{sel['ratio']:.2f}); ", end="")
        print(f"train step x{step['ratio']:.2f} (lax {1e3 * step['lax']['median_s']:.1f} ms)", flush=True)
    widest = str(widths[-1])
    finish(
        args,
        result,
        d_sae=int(widest),
        topk_ratio=result["select"][widest]["ratio"],
        step_ratio=result["step"][widest]["ratio"],
    )


if __name__ == "__main__":
    main()
