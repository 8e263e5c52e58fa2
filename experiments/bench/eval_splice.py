"""CE-recovered eval, three ways in one run on the same model, SAE and tokens (every window starts with BOS):
- `one_row_ablations` (saelab's default): the blocks below the hook run once; above it the clean and SAE
  variants run on every row and the zero and mean ablations on one row (they do not depend on the text);
- `shared_prefix` (the previous default): the blocks below shared, all four variants on every row;
- `full_forwards`: four full hooked forwards.

    python experiments/bench/eval_splice.py [--quick] [--layer 6] [--batch 16] [--context 128]

Reports the first call's seconds (compilation included) and steady-state tokens/s of each, the ratios of the
default to the other two, and the largest difference of the eval numbers (they compute the same quantities).
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
    from saelab.sae import TopKConfig, decode, encode, init_params

    model = Model.load(a.model)
    tokens = jnp.asarray(docstring_tokens(model.tokenizer, batch * a.context).reshape(batch, a.context))
    tokens = tokens.at[:, 0].set(model.bos_id)
    hook = f"blocks.{a.layer}.hook_resid_post"
    cfg = TopKConfig(d_in=model.cfg.d_model, d_sae=a.d_sae, k=32)
    sae = init_params(jax.random.key(0), cfg)
    mean = jnp.zeros((model.cfg.d_model,), jnp.float32)
    enc = lambda p, x: encode(p, x, cfg)
    dec = lambda p, codes: decode(p, codes)

    ways = {
        "one_row_ablations": {},
        "shared_prefix": {"shared_ablations": False},
        "full_forwards": {"shared_prefix": False},
    }
    sides = {}
    for name, kw in ways.items():
        fn = splice.make_splice_fn(model.cfg, hook, enc, dec, **kw)
        run = lambda f=fn: jax.block_until_ready(f(model.params, sae, tokens, mean))
        t = time.perf_counter()
        run()
        first_s = time.perf_counter() - t
        timing = timeit(run, reps, warmup=0)
        sums = splice.finish(splice.SpliceSums(*(np.asarray(v, np.float64) for v in run()[0])))
        sides[name] = {
            "first_call_s": first_s,
            **timing,
            "tokens_per_s": tokens.size / timing["median_s"],
            "metrics": sums,
        }
    new, prev, full = (sides[k] for k in ways)
    max_diff = max(abs(side["metrics"][k] - full["metrics"][k]) for side in (new, prev) for k in full["metrics"])
    result = {
        "model": a.model,
        "hook": hook,
        "batch": batch,
        "context": a.context,
        "d_sae": a.d_sae,
        **sides,
        "ratio_vs_shared_prefix": new["tokens_per_s"] / prev["tokens_per_s"],
        "ratio_vs_full_forwards": new["tokens_per_s"] / full["tokens_per_s"],
        "max_metric_difference": max_diff,
    }
    finish(
        a,
        result,
        one_row_tok_s=new["tokens_per_s"],
        shared_prefix_tok_s=prev["tokens_per_s"],
        full_tok_s=full["tokens_per_s"],
        ratio_vs_shared_prefix=result["ratio_vs_shared_prefix"],
        ratio_vs_full=result["ratio_vs_full_forwards"],
        max_metric_diff=max_diff,
    )


if __name__ == "__main__":
    main()
