"""TopK SAE training, saelab against SAELens on the same store, batches and machine.

First the bare train steps alternate in blocks on the same batches (the ratio robust to a busy machine).
Then both train a TopK SAE (k 32, 8x expansion, batch 4096, fp32, Adam 3e-4, constant learning rate) on the
same shuffled batches of the demo store (BOS excluded), scaled by the same input-scaling scalar. saelab runs its
real trainer (`saelab.train.run`, checkpoints and logging included), once per budget; SAELens runs
`SAETrainer.fit()` once per peer variant (`saelab.peers.saelens`): "defaults" (SAELens's documented
defaults for everything not named above) and "matched" (AuxK coefficient 1/32, dead window 244 steps and the
geometric-median b_dec, saelab's values), its SAE copied at each smaller budget on the way (its learning rate is
constant, so the copy is the SAE a run of that budget ends with). Throughput excludes each side's first step
(compilation / warm-up) and comes from the largest budget's run. Quality: explained variance of every SAE on
held-out docstrings (the corpus split the store never saw), activations from the model, BOS excluded. FLOP
rates: dense-equivalent training FLOPs (12 d_in d_sae per token: forward and backward of both GEMMs, what a dense
trainer such as SAELens performs) and the FLOPs our sparse step performs (2 d_in d_sae for the encoder GEMM plus
8 d_in k for the sparse encoder-gradient and decoder passes), each per second, against the peak of one jitted
fp32 GEMM of the encoder's shape here.

`--device cuda` trains SAELens on that torch device (saelab runs on JAX's default device: the GPU when
jax[cuda12] is installed); the interleaved steps then synchronise the device after each block.

`--expansion 32` / `128` measure wider SAEs (18,432 / 73,728 latents at d_model 576); `--steps-only` keeps
only the interleaved bare steps (what a width sweep needs: end to end at 73,728 latents SAELens needs hours).

    python experiments/bench/train_vs_saelens.py [--quick] [--store activations/demo] [--budgets N,N,N]
        [--peer both|defaults|matched] [--expansion 8] [--steps-only] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import finish, timeit  # noqa: E402

from saelab import train  # noqa: E402
from saelab.data import open_corpus, pack_for_model  # noqa: E402
from saelab.models import Model  # noqa: E402
from saelab.peers import saelens  # noqa: E402
from saelab.runtime.hugepages import reexec_with_hugepages  # noqa: E402
from saelab.sae import decode, encode, load_sae  # noqa: E402
from saelab.store import ActivationLoader, ActivationStore  # noqa: E402
from saelab.train.mesh import make_mesh  # noqa: E402
from saelab.train.placement import initial_state  # noqa: E402
from saelab.train.step import make_train_step  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "sae-topk.toml"
BUDGETS = (409_600, 2_048_000, 4_096_000)  # 100, 500 and 1,000 steps of 4,096 tokens


def main() -> None:
    reexec_with_hugepages(wanted=True)  # both sides under huge pages, as `saelab train --hugepages`
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one budget of 409,600 tokens, defaults peer only")
    p.add_argument("--store", default="activations/demo", help="activation store (made by `just demo`)")
    p.add_argument("--budgets", help="comma-separated training-token budgets (default 409600,2048000,4096000)")
    p.add_argument("--peer", choices=["both", "defaults", "matched"], help="SAELens variants (default both)")
    p.add_argument("--heldout-tokens", type=int, default=16_384)
    p.add_argument("--expansion", type=int, help="d_sae / d_in (default: the config's, 8)")
    p.add_argument("--steps-only", action="store_true", help="only the interleaved bare steps, no end-to-end runs")
    p.add_argument("--blocks", type=int, help="interleaved blocks of 5 steps a side (default 6; quick 3)")
    p.add_argument("--device", default="cpu", help="torch device SAELens trains on (cpu, cuda)")
    p.add_argument("--out", help="JSON path (default results/bench/train_vs_saelens.json)")
    p.set_defaults(bench="train_vs_saelens")
    a = p.parse_args()
    budgets = sorted(int(b) for b in a.budgets.split(",")) if a.budgets else ([BUDGETS[0]] if a.quick else BUDGETS)
    chosen = a.peer or ("defaults" if a.quick else "both")
    variants = ["defaults", "matched"] if chosen == "both" else [chosen]
    tokens = budgets[-1]
    store = ActivationStore(a.store)
    hook = store.hooks[0]
    x = heldout_activations(store.meta["model"], hook, a.heldout_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = {
            b: train.load_config(
                CONFIG,
                [
                    f"data.store='{a.store}'",
                    f"train.tokens={b}",
                    f"train.out='{tmp}'",
                    f"train.name='saelab-{b}'",
                    "train.wandb='disabled'",
                    "train.log_every=50",
                    "train.checkpoint_every=1000000",
                    *([f"sae.expansion={a.expansion}"] if a.expansion else []),
                ],
            )
            for b in budgets
        }
        cfg = cfgs[tokens]
        steps = interleaved_steps(cfg, store, hook, a.blocks or (3 if a.quick else 6), 5, a.device)
        print(f"interleaved steps: saelab {steps['saelab']:,.0f} tok/s, SAELens {steps['saelens']:,.0f} tok/s")
        if a.steps_only:
            return steps_only(a, cfg, store, hook, steps)
        ev = {"saelab": {}}
        for b in budgets:
            ours = train.run(cfgs[b])
            sae = load_sae(ours.run_dir)
            ev["saelab"][b] = explained_variance(
                x, np.asarray(decode(sae.params, encode(sae.params, jnp.asarray(x), sae.cfg)))
            )
        rate = {"saelab": ours.tokens_per_s}
        for v in variants:
            snapshots = {}
            peer = saelens.train(
                saelens.SAELensTrainConfig(
                    store=a.store,
                    hook=hook,
                    k=sae.cfg.k,
                    expansion=cfg.sae.expansion,
                    tokens=tokens,
                    batch_size=cfg.data.batch_size,
                    lr=cfg.optim.lr,
                    seed=cfg.data.seed,
                    input_scaling=cfg.train.input_scaling,
                    settings=v,
                    dead_tokens=cfg.train.dead_tokens,
                    checkpoint_tokens=budgets[:-1],
                    device=a.device,
                    out=Path(tmp) / f"saelens-{v}",
                ),
                on_tokens=lambda n, s, _scale, snapshots=snapshots: snapshots.__setitem__(n, copy.deepcopy(s)),
            )
            snapshots[tokens] = peer.sae
            name = f"saelens_{v}"
            rate[name] = peer.tokens_per_s
            ev[name] = {
                b: explained_variance(x * peer.scale, saelens_reconstruct(s, x * peer.scale))
                for b, s in snapshots.items()
            }
    d, m = sae.cfg.d_in, sae.cfg.d_sae
    peak = gemm_peak(cfg.data.batch_size, d, m)
    flops = lambda tok_s: 12 * d * m * tok_s / 1e9
    performed = lambda tok_s: (2 * d * m + 8 * d * sae.cfg.k) * tok_s / 1e9
    first = f"saelens_{variants[0]}"
    result = {
        "store": a.store,
        "hook": hook,
        "budgets": budgets,
        "batch": cfg.data.batch_size,
        "d_in": d,
        "d_sae": m,
        "k": sae.cfg.k,
        "heldout_tokens": int(x.shape[0]),
        "peer_settings": {
            v: saelens.saelens_settings(
                saelens.SAELensTrainConfig(store=a.store, settings=v, device=a.device, out=Path("x"))
            )
            for v in variants
        },
        "tokens_per_s": rate,
        "heldout_ev": ev,
        "dense_equiv_gflops": {k: flops(r) for k, r in rate.items()},
        "saelab_performed_gflops": performed(rate["saelab"]),
        "gemm_peak_gflops": peak,
        "ratio_tokens_per_s": {k: rate["saelab"] / r for k, r in rate.items() if k != "saelab"},
        "interleaved_step_tokens_per_s": steps,
        "ratio_interleaved_steps": steps["saelab"] / steps["saelens"],
        "utilisation_saelab": performed(rate["saelab"]) / peak,
        "utilisation_saelens": flops(rate[first]) / peak,
    }
    finish(
        a,
        result,
        saelab_tok_s=rate["saelab"],
        saelens_tok_s=rate[first],
        ratio=rate["saelab"] / rate[first],
        ratio_interleaved=result["ratio_interleaved_steps"],
        **{f"ev_{k}_{b}": e for k, per in ev.items() for b, e in per.items()},
        tokens=tokens,
        saelab_dense_equiv_gflops=flops(rate["saelab"]),
        saelab_performed_gflops=performed(rate["saelab"]),
        gemm_peak_gflops=peak,
        utilisation=result["utilisation_saelab"],
    )


def steps_only(a: argparse.Namespace, cfg, store: ActivationStore, hook: str, steps: dict[str, float]) -> None:
    """Write and print the interleaved-step result alone (`--steps-only`)."""
    sae = train.resolve(cfg).sae
    d, m = sae.d_in, sae.d_sae
    peak = gemm_peak(cfg.data.batch_size, d, m)
    result = {
        "store": a.store,
        "hook": hook,
        "batch": cfg.data.batch_size,
        "d_in": d,
        "d_sae": m,
        "k": sae.k,
        "interleaved_step_tokens_per_s": steps,
        "ratio_interleaved_steps": steps["saelab"] / steps["saelens"],
        "gemm_peak_gflops": peak,
        "saelab_performed_gflops": (2 * d * m + 8 * d * sae.k) * steps["saelab"] / 1e9,
        "saelens_dense_gflops": 12 * d * m * steps["saelens"] / 1e9,
    }
    finish(
        a,
        result,
        d_sae=m,
        saelab_step_tok_s=steps["saelab"],
        saelens_step_tok_s=steps["saelens"],
        ratio_interleaved=result["ratio_interleaved_steps"],
        gemm_peak_gflops=peak,
    )


def interleaved_steps(
    cfg, store: ActivationStore, hook: str, blocks: int, per_block: int, device: str = "cpu"
) -> dict[str, float]:
    """Tokens/s of the bare train steps, saelab's jitted step and SAELens's `SAETrainer.step`, alternating in
    blocks of `per_block` steps on the same in-memory batches so that both see the same machine load; each
    side's median block. The ratio is robust to other work on the machine; absolute rates are not."""
    import torch

    r = train.resolve(cfg)
    mesh = make_mesh()
    state, tx = initial_state(r.sae, cfg, mesh)
    step = jax.jit(
        make_train_step(r.sae, tx, scale=1.0, dead_tokens=cfg.train.dead_tokens, sparsity_warmup_steps=0),
        donate_argnums=0,
    )
    scale = train.input_scale(store.stats(hook), cfg.train.input_scaling, r.sae.d_in)
    loader = ActivationLoader(store, hook, cfg.data.batch_size, seed=cfg.data.seed)
    view = store.activations(hook)
    xs = [view.take(loader.global_indices(i), np.float32) * np.float32(scale) for i in range(per_block)]
    trainer, _, _ = saelens.make_trainer(
        saelens.SAELensTrainConfig(
            store=store.path,
            hook=hook,
            k=r.sae.k,
            expansion=cfg.sae.expansion,
            tokens=10**12,
            batch_size=cfg.data.batch_size,
            lr=cfg.optim.lr,
            device=device,
            out=Path("unused"),
        ),
        data=iter(()),
    )
    trainer.sae.train()

    def ours():
        nonlocal state
        for x in xs:
            state, m = step(state, jnp.asarray(x))
        jax.block_until_ready(m)

    def theirs():
        for x in xs:
            trainer.maybe_reset_sparsity()
            trainer.step(torch.from_numpy(x))
            trainer.n_training_steps += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    ours(), theirs()  # compile / warm up
    times = {"saelab": [], "saelens": []}
    for _ in range(blocks):
        for name, fn in (("saelab", ours), ("saelens", theirs)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    tok = per_block * cfg.data.batch_size
    return {name: tok / float(np.median(v)) for name, v in times.items()}


def saelens_reconstruct(sae, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(sae.device)
        return sae.decode(sae.encode(t)).cpu().numpy()


def heldout_activations(model_name: str, hook: str, n_tokens: int) -> np.ndarray:
    """Hook activations of the held-out docstrings (never in the store), BOS positions dropped."""
    model = Model.load(model_name)
    rows = []
    batches = pack_for_model(open_corpus("python-docs", "heldout"), model, context=128, batch=16)
    for b in batches:
        _, cache = model.run_with_cache(b.tokens, [hook], stop_at_layer="auto")
        rows.append(np.asarray(cache[hook][:, 1:], np.float32).reshape(-1, model.cfg.d_model))
        if sum(len(r) for r in rows) >= n_tokens:
            break
    return np.concatenate(rows)[:n_tokens]


def explained_variance(x: np.ndarray, x_hat: np.ndarray) -> float:
    x, x_hat = x.astype(np.float64), x_hat.astype(np.float64)
    return float(1 - np.sum((x - x_hat) ** 2) / np.sum((x - x.mean(0)) ** 2))


def gemm_peak(batch: int, d: int, m: int) -> float:
    """GFLOP/s of one jitted fp32 (batch, d) @ (d, m) GEMM, the shape of the encoder's forward."""
    a = jnp.ones((batch, d), jnp.float32)
    b = jnp.ones((d, m), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    t = timeit(lambda: f(a, b).block_until_ready(), reps=20, warmup=2)["min_s"]
    return 2 * batch * d * m / t / 1e9


if __name__ == "__main__":
    main()
