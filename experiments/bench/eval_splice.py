"""CE-recovered eval: the splice with the blocks below the hook shared by the four variants (clean, SAE,
zero, mean) against four full hooked forwards (saelab's previous splice), same model, SAE, tokens and run.

    python experiments/bench/eval_splice.py [--quick] [--layer 6] [--batch 16] [--context 128]

Reports compile seconds and steady-state tokens/s of each, their ratio, and the largest difference of the
eval numbers between the two (they compute the same quantities).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import docstring_tokens, finish, parser, timeit  # noqa: E402


def main() -> None:
    ap = parser(__doc__, "eval_splice", "batch 8, 2 repetitions", layer=6, batch=16, context=128, d_sae=4608, reps=5)
    a = ap.parse_args()
    batch, reps = (8, 2) if a.quick else (a.batch, a.reps)

    import jax
    import jax.numpy as jnp

    from saelab.evals import splice
    from saelab.models import Model
    from saelab.sae import SAEConfig, decode, encode, init_params

    model = Model.load(a.model)
    tokens = jnp.asarray(docstring_tokens(model.tokenizer, batch * a.context).reshape(batch, a.context))
    tokens = tokens.at[:, 0].set(model.bos_id)
    hook = f"blocks.{a.layer}.hook_resid_post"
    cfg = SAEConfig(architecture="topk", d_in=model.cfg.d_model, d_sae=a.d_sae, k=32)
    sae = init_params(jax.random.key(0), cfg)
    mean = jnp.zeros((model.cfg.d_model,), jnp.float32)
    enc = lambda p, x: encode(p, x, cfg)
    dec = lambda p, codes: decode(p, codes)

    sides = {}
    for name, shared in (("shared_prefix", True), ("full_forwards", False)):
        fn = splice.make_splice_fn(model.cfg, hook, enc, dec, shared_prefix=shared)
        t = time.perf_counter()
        compiled = fn.lower(model.params, sae, tokens, mean).compile()
        compile_s = time.perf_counter() - t
        run = lambda c=compiled: jax.block_until_ready(c(model.params, sae, tokens, mean))
        timing = timeit(run, reps)
        sums = splice.finish(splice.SpliceSums(*(np.asarray(v, np.float64) for v in run()[0])))
        sides[name] = {
            "compile_s": compile_s,
            **timing,
            "tokens_per_s": tokens.size / timing["median_s"],
            "metrics": sums,
        }
    fast, slow = sides["shared_prefix"], sides["full_forwards"]
    max_diff = max(abs(fast["metrics"][k] - slow["metrics"][k]) for k in slow["metrics"])
    result = {
        "model": a.model,
        "hook": hook,
        "batch": batch,
        "context": a.context,
        "d_sae": a.d_sae,
        **sides,
        "ratio_tokens_per_s": fast["tokens_per_s"] / slow["tokens_per_s"],
        "ratio_compile": slow["compile_s"] / fast["compile_s"],
        "max_metric_difference": max_diff,
    }
    finish(
        a,
        result,
        shared_tok_s=fast["tokens_per_s"],
        full_tok_s=slow["tokens_per_s"],
        ratio=result["ratio_tokens_per_s"],
        shared_compile_s=fast["compile_s"],
        full_compile_s=slow["compile_s"],
        max_metric_diff=max_diff,
    )


if __name__ == "__main__":
    main()
