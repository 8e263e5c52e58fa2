"""N SAEs trained in one multi-SAE run against N separate runs, on the same store, batches and machine.

The SAEs are TopK SAEs of one width at k = 16, 32, 64, 128, ... (each its own part of the one jitted step),
or with --same N TopK SAEs of one config (k 32) and N seeds, stacked (one vmapped step over stacked states). First
each SAE trains alone (`saelab.train.run`), then all of them together (`saelab.train.multi.run`), each run
with its checkpoint, metrics and export. Reported: wall time of whole runs (setup, initial b_dec,
compilation and the steps) and steady-state time per step (compilation excluded), the multi-SAE run's over
one separate run's (the aim is well under N), and the largest relative parameter difference between an SAE
trained together and alone. Whole runs follow each other, so a busy machine skews their ratio; the
interleaved measurement alternates blocks of steps (each block reads its batches from the store: N reads for
the separate steps, one for the multi-SAE step) so that both sides see the same load.

    python experiments/bench/train_multi.py [--quick] [--store activations/demo] [--n 4] [--same]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from common import finish, parser  # noqa: E402

from saelab import train  # noqa: E402
from saelab.runtime.hugepages import reexec_with_hugepages  # noqa: E402
from saelab.store import ActivationLoader, ActivationStore  # noqa: E402
from saelab.train import multi  # noqa: E402
from saelab.train.mesh import make_mesh  # noqa: E402
from saelab.train.placement import initial_state  # noqa: E402
from saelab.train.stack import make_multi_step, stack  # noqa: E402
from saelab.train.step import make_train_step  # noqa: E402


def main() -> None:
    reexec_with_hugepages(wanted=True)  # both sides under huge pages, as `saelab train --hugepages`
    ap = parser(__doc__, "train_multi", "4 SAEs at 2x expansion, batch 1024, 20 steps", n=4, expansion=8, batch=4096)
    ap.add_argument("--store", default="activations/demo", help="activation store (made by `just demo`)")
    ap.add_argument("--steps", type=int, help="training steps of every run (default 60; quick 20)")
    ap.add_argument("--same", action="store_true", help="N SAEs of one config and N seeds: one stacked step")
    a = ap.parse_args()
    expansion, batch, steps = (2, 1024, a.steps or 20) if a.quick else (a.expansion, a.batch, a.steps or 60)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = multi.MultiTrainConfig(
            data={"store": a.store, "batch_size": batch},
            sae={"architecture": "topk", "expansion": expansion},
            train={
                "name": "together",
                "out": tmp,
                "tokens": steps * batch,
                "log_every": 10,
                "checkpoint_every": steps,
                "wandb": "disabled",
                "progress": False,
            },
            saes=_saes(a.n, a.same),
            stack=a.same,
        )
        blocks = interleaved_steps(cfg, blocks=3 if a.quick else 5, per_block=4)
        print(f"interleaved: multi-SAE step {blocks['multi']:.3f} s, {a.n} separate steps {blocks['separate']:.3f} s")
        alone, alone_s = [], []
        for member in cfg.members():
            elsewhere = member.train.model_copy(update={"name": member.train.name.replace("/", "-alone-")})
            t = time.perf_counter()
            alone.append(train.run(member.model_copy(update={"train": elsewhere})))
            alone_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        together = multi.run(cfg)
        together_s = time.perf_counter() - t
    one_s, one_step = float(np.mean(alone_s)), batch / float(np.mean([r.tokens_per_s for r in alone]))
    together_step = batch / together.tokens_per_s
    diff = max(_rel_diff(r.params, together.saes[name].params) for r, name in zip(alone, together.saes, strict=True))
    result = {
        "store": a.store,
        "n_saes": a.n,
        "saes": [m.model_dump(mode="json") for m in cfg.saes],
        "stacked": a.same,
        "d_in": int(together.saes[next(iter(together.saes))].params.W_enc.shape[0]),
        "expansion": expansion,
        "batch": batch,
        "steps": steps,
        "separate_run_s": alone_s,
        "multi_run_s": together_s,
        "separate_step_s": [batch / r.tokens_per_s for r in alone],
        "multi_step_s": together_step,
        "wall_multi_over_one": together_s / one_s,
        "wall_separate_over_multi": sum(alone_s) / together_s,
        "step_multi_over_one": together_step / one_step,
        "max_rel_param_diff": diff,
        "interleaved_step_s": blocks,
        "interleaved_separate_over_multi": blocks["separate"] / blocks["multi"],
    }
    finish(
        a,
        result,
        n=a.n,
        stacked=a.same,
        wall_multi_over_one=result["wall_multi_over_one"],
        wall_separate_over_multi=result["wall_separate_over_multi"],
        step_multi_over_one=result["step_multi_over_one"],
        interleaved_separate_over_multi=result["interleaved_separate_over_multi"],
        multi_run_s=together_s,
        separate_runs_s=sum(alone_s),
        max_rel_param_diff=diff,
    )


def interleaved_steps(cfg: multi.MultiTrainConfig, blocks: int, per_block: int) -> dict[str, float]:
    """Seconds per step of the multi-SAE step and of the N separate steps one after another, alternating in
    blocks of `per_block` steps; each side's median block. Batches are read from the store inside the block."""
    cfgs = cfg.members()
    rs = [train.resolve(c) for c in cfgs]
    store = ActivationStore(cfg.data.store)
    mesh = make_mesh()
    loader = ActivationLoader(store, rs[0].hook, cfg.data.batch_size, seed=cfg.data.seed)
    view = store.activations(rs[0].hook)
    rows = [loader.global_indices(i) for i in range(per_block)]
    scale = train.input_scale(store.stats(rs[0].hook), cfgs[0].train.input_scaling, rs[0].sae.d_in)
    step = lambda c, r, tx, s: make_train_step(
        r.sae, tx, scale=s, dead_tokens=c.train.dead_tokens, sparsity_warmup_steps=0
    )
    alone = [initial_state(r.sae, c, mesh) for c, r in zip(cfgs, rs, strict=True)]
    alone_steps = [
        jax.jit(step(c, r, tx, scale), donate_argnums=0) for c, r, (_, tx) in zip(cfgs, rs, alone, strict=True)
    ]
    alone_states = [s for s, _ in alone]
    groups = multi.group(cfgs, [0] * len(cfgs), [scale] * len(cfgs), cfg.stack)
    made = [initial_state(r.sae, c, mesh) for c, r in zip(cfgs, rs, strict=True)]
    group_steps = [step(cfgs[g.members[0]], rs[g.members[0]], made[g.members[0]][1], 1.0) for g in groups]
    together = tuple(stack([made[j][0] for j in g.members]) if g.stacked else made[g.members[0]][0] for g in groups)
    multi_step = jax.jit(make_multi_step(groups, group_steps), donate_argnums=0)

    def separate() -> None:
        for j, fn in enumerate(alone_steps):
            for idx in rows:
                alone_states[j], m = fn(alone_states[j], jax.device_put(view.take(idx, np.float32)))
        jax.block_until_ready(m)

    def together_steps() -> None:
        nonlocal together
        for idx in rows:
            together, m = multi_step(together, (jax.device_put(view.take(idx, np.float32)),))
        jax.block_until_ready(m)

    separate(), together_steps()  # compile
    times: dict[str, list[float]] = {"separate": [], "multi": []}
    for _ in range(blocks):
        for name, fn in (("separate", separate), ("multi", together_steps)):
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) / per_block)
    return {name: float(np.median(v)) for name, v in times.items()}


def _saes(n: int, same: bool) -> list[dict]:
    if same:
        return [{"name": f"seed{i}", "sae": {"k": 32}, "train": {"seed": i}} for i in range(n)]
    return [{"name": f"k{16 << i}", "sae": {"k": 16 << i}} for i in range(n)]


def _rel_diff(a, b) -> float:
    """Largest |a - b| over max |b| across the parameter arrays."""
    pairs = [(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in zip(a, b, strict=True) if y is not None]
    return max(float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-30)) for x, y in pairs)


if __name__ == "__main__":
    main()
