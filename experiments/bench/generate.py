"""Greedy generation with a KV cache: saelab's jitted prefill + scan against transformers' `generate`
(use_cache=True, greedy) on the same model, prompts and length, in one run.

    python experiments/bench/generate.py [--quick] [--batch 4] [--new-tokens 64]

Tokens/s counts generated tokens (batch x new tokens) per second of steady-state generation (saelab's
compile is timed separately). Also reports how many leading tokens the two greedy continuations share.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import finish, parser, timeit, torch_model  # noqa: E402

PROMPTS = [
    'def read_config(path):\n    """Read a TOML file and',
    "The socket module provides access to the BSD socket interface. It",
    "In mathematics, a prime number is",
    "Open the file in binary mode and",
]


def main() -> None:
    ap = parser(__doc__, "generate", "32 new tokens, 2 repetitions", batch=4, new_tokens=64, reps=3)
    a = ap.parse_args()
    new, reps = (32, 2) if a.quick else (a.new_tokens, a.reps)

    import jax
    import jax.numpy as jnp
    import torch

    from saelab.models import Model
    from saelab.models.generate import generate

    model = Model.load(a.model)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(a.batch)]
    toks, mask = model.to_tokens(prompts, prepend_bos=False)
    n_gen = a.batch * new

    t = time.perf_counter()
    run = lambda: jax.block_until_ready(
        generate(model.params, model.cfg, jnp.asarray(toks), jnp.asarray(mask), new).tokens
    )
    ours_tokens = np.asarray(run())
    compile_s = time.perf_counter() - t
    ours = timeit(run, reps, warmup=0)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    hf = torch_model(a.model)
    ids, att = torch.tensor(toks, dtype=torch.long), torch.tensor(mask, dtype=torch.long)
    pad = model.eos_id if model.eos_id is not None else 0

    def theirs_run():
        with torch.no_grad():
            return hf.generate(
                input_ids=ids,
                attention_mask=att,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                use_cache=True,
                pad_token_id=pad,
            )

    theirs_tokens = theirs_run()[:, toks.shape[1] :].numpy()
    theirs = timeit(theirs_run, reps, warmup=0)
    same = [int(np.argmax(np.r_[o != t_, True])) for o, t_ in zip(ours_tokens, theirs_tokens, strict=True)]
    result = {
        "model": a.model,
        "batch": a.batch,
        "prompt_tokens": int(toks.shape[1]),
        "new_tokens": new,
        "saelab": {**ours, "compile_s": compile_s, "tokens_per_s": n_gen / ours["median_s"]},
        "transformers": {**theirs, "tokens_per_s": n_gen / theirs["median_s"]},
        "ratio_tokens_per_s": theirs["median_s"] / ours["median_s"],
        "shared_greedy_prefix": same,
    }
    finish(
        a,
        result,
        saelab_tok_s=result["saelab"]["tokens_per_s"],
        transformers_tok_s=result["transformers"]["tokens_per_s"],
        ratio=result["ratio_tokens_per_s"],
        saelab_compile_s=compile_s,
        min_shared_prefix=min(same),
        new_tokens=new,
    )


if __name__ == "__main__":
    main()
