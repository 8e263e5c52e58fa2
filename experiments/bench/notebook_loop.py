"""What a notebook user waits for: a loop of 8 latent ablations written with lambdas on a spliced model, and
`steer` (clean and steered continuations, 16 new tokens) called three times with other latents and strengths.

Counts XLA compiles (every program built, small helpers included, and the model's own forwards and
generation loops alone) and seconds for each. The same file runs against an older checkout of
saelab for a before/after (`git worktree add /tmp/before COMMIT`, then run this script with that checkout
first on PYTHONPATH): it only uses calls both versions have.

    python experiments/bench/notebook_loop.py [--quick] [--sae checkpoints/demo]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import finish, parser  # noqa: E402

PROMPT = "The socket module provides access to the BSD socket interface. It"


def main() -> None:
    ap = parser(__doc__, "notebook_loop", "4 ablations, 2 steers", latents=8, new_tokens=16)
    ap.add_argument("--sae", default="checkpoints/demo", help="a run or SAE folder at a residual hook")
    a = ap.parse_args()
    n_ablate, n_steer = (4, 2) if a.quick else (a.latents, 3)

    import jax
    import jax._src.dispatch as dispatch
    import numpy as np

    import saelab
    from saelab.models import Model
    from saelab.sae import load_sae
    from saelab.spliced import SplicedModel
    from saelab.spliced.steer import steer

    compiles: list[str] = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _s, **kw: (
            compiles.append(kw.get("fun_name", "")) if event == dispatch.BACKEND_COMPILE_EVENT else None
        )
    )
    model = Model.load(a.model)
    sae = load_sae(a.sae)
    acts = f"{sae.metadata['hook_name']}.hook_sae_acts_post"
    spliced = SplicedModel(model, [sae], use_error_term=True)
    toks, mask = model.to_tokens([PROMPT])
    jax.block_until_ready(spliced.run_with_hooks(toks, {}, mask))  # the clean program, as a notebook has it

    before, t = len(compiles), time.perf_counter()
    times = []
    for i in range(n_ablate):
        s = time.perf_counter()
        out = spliced.run_with_hooks(toks, {acts: lambda x: x.at[..., i].set(0.0)}, mask)  # noqa: B023
        np.asarray(out)
        times.append(time.perf_counter() - s)
    ablate_s, ablate_compiles = time.perf_counter() - t, len(compiles) - before
    ablate_programs = sum(n == "jit(run)" for n in compiles[before:])  # the model's own compiled forwards

    before, t = len(compiles), time.perf_counter()
    steer_times = []
    for j in range(n_steer):
        s = time.perf_counter()
        steer(model, sae, PROMPT, [100 + j], [8.0 - j], max_new_tokens=a.new_tokens)
        steer_times.append(time.perf_counter() - s)
    steer_s, steer_compiles = time.perf_counter() - t, len(compiles) - before
    steer_programs = sum(n == "jit(run)" for n in compiles[before:])  # generation loops compiled
    result = {
        "saelab": str(Path(saelab.__file__).parent),
        "sae": a.sae,
        "ablations": n_ablate,
        "ablation_seconds": times,
        "ablation_compiles": ablate_compiles,
        "ablation_model_programs": ablate_programs,
        "steers": n_steer,
        "steer_seconds": steer_times,
        "steer_compiles": steer_compiles,
        "steer_model_programs": steer_programs,
    }
    finish(
        a,
        result,
        ablations=n_ablate,
        ablate_s=ablate_s,
        ablate_compiles=ablate_compiles,
        ablate_programs=ablate_programs,
        ablate_later_s=float(np.median(times[1:])),
        steers=n_steer,
        steer_s=steer_s,
        steer_compiles=steer_compiles,
        steer_programs=steer_programs,
        steer_later_s=float(np.median(steer_times[1:])),
    )


if __name__ == "__main__":
    main()
