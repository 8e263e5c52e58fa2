"""Forward throughput for harvesting: the JAX model stopped after layer L against transformers on torch with
a forward hook on the same layer, the way peers harvest (full forward, and early exit by raising in the hook).

`--device cuda` runs the torch side on that device (synchronised before each timing ends); the JAX model runs on
JAX's default device (the GPU when jax[cuda12] is installed).

    python experiments/bench/forward.py [--quick] [--layer 6] [--batch 16] [--context 128] [--device cpu]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import StopForward, docstring_tokens, finish, parser, timeit, torch_model  # noqa: E402


def main() -> None:
    ap = parser(__doc__, "forward", "3 repetitions", layer=6, batch=16, context=128, reps=10)
    ap.add_argument("--device", default="cpu", help="torch device of the peer (cpu, cuda)")
    a = ap.parse_args()
    reps = 3 if a.quick else a.reps

    import jax
    import jax.numpy as jnp

    from saelab.models import Model

    model = Model.load(a.model)
    tokens = docstring_tokens(model.tokenizer, a.batch * a.context).reshape(a.batch, a.context)
    hook = f"blocks.{a.layer}.hook_resid_post"
    toks = jnp.asarray(tokens)

    def jax_run():
        _, cache = model.run_with_cache(toks, [hook], stop_at_layer="auto")
        jax.block_until_ready(cache[hook])

    jax_t = timeit(jax_run, reps)

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    hf = torch_model(a.model).to(a.device)
    layer = hf.model.layers[a.layer]
    captured = {}

    def grab(_m, _i, out, stop: bool):
        captured["x"] = (out[0] if isinstance(out, tuple) else out).detach()
        if stop:
            raise StopForward

    tt = torch.tensor(tokens, dtype=torch.long, device=a.device)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else lambda: None

    def torch_run(stop: bool):
        h = layer.register_forward_hook(lambda m, i, o: grab(m, i, o, stop))
        try:
            with torch.inference_mode():
                hf(input_ids=tt)
        except StopForward:
            pass
        finally:
            h.remove()
        sync()

    torch_full = timeit(lambda: torch_run(False), reps)
    torch_stop = timeit(lambda: torch_run(True), reps)
    _, cache = model.run_with_cache(toks, [hook], stop_at_layer="auto")
    max_diff = float(np.abs(np.asarray(cache[hook]) - captured["x"].cpu().numpy()).max())

    n = a.batch * a.context
    tps = {
        k: n / v["median_s"]
        for k, v in {"jax": jax_t, "torch_full": torch_full, "torch_early_exit": torch_stop}.items()
    }
    best_torch = max(tps["torch_full"], tps["torch_early_exit"])
    result = {
        "bench": "forward",
        "model": a.model,
        "hook": hook,
        "batch": a.batch,
        "context": a.context,
        "dtype": "float32",
        "tokens_per_s": tps,
        "timings": {"jax": jax_t, "torch_full": torch_full, "torch_early_exit": torch_stop},
        "ratio_jax_vs_best_torch": tps["jax"] / best_torch,
        "max_abs_diff_activation": max_diff,
        "torch_threads": torch.get_num_threads(),
        "torch_device": a.device,
    }
    finish(
        a,
        result,
        jax_tok_s=tps["jax"],
        torch_full_tok_s=tps["torch_full"],
        torch_early_exit_tok_s=tps["torch_early_exit"],
        ratio_jax_vs_torch=result["ratio_jax_vs_best_torch"],
        max_abs_diff=max_diff,
    )


if __name__ == "__main__":
    main()
