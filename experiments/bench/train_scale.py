"""Demo-scale training throughput: saelab's real trainer (`saelab.train.run`: loader, checkpoints, logging)
training the TopK SAE of experiments/sae-topk.toml (k 32, 4,608 latents, batch 4096) for 10M tokens on the
demo store (which it cycles through: the store holds 400k tokens), end to end.

Reports the trainer's tokens/s (first step excluded), the wall time of the whole call (compilation included) and
the last logged explained variance. `--topk-select blocks` trains with the block top-k instead of lax.top_k.

    python experiments/bench/train_scale.py [--quick] [--store activations/demo] [--tokens 10000000]
        [--topk-select lax|blocks]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import finish, parser  # noqa: E402

from saelab import train  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "sae-topk.toml"


def main() -> None:
    ap = parser(__doc__, "train_scale", "409,600 tokens")
    ap.add_argument("--store", default="activations/demo", help="activation store (made by `just demo`)")
    ap.add_argument("--tokens", type=int, help="training tokens (default 10,000,000; quick 409,600)")
    ap.add_argument("--topk-select", choices=["lax", "blocks"], default="lax")
    a = ap.parse_args()
    tokens = a.tokens or (409_600 if a.quick else 10_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = train.load_config(
            CONFIG,
            [
                f"data.store='{a.store}'",
                f"train.tokens={tokens}",
                f"train.out='{tmp}'",
                "train.name='scale'",
                "train.wandb='disabled'",
                "train.progress=false",
                "train.log_every=100",
                "train.checkpoint_every=1000",
                f"sae.topk_select='{a.topk_select}'",
            ],
        )
        t = time.perf_counter()
        res = train.run(cfg)
        wall = time.perf_counter() - t
    result = {
        "store": a.store,
        "tokens": tokens,
        "steps": res.steps,
        "batch": cfg.data.batch_size,
        "topk_select": a.topk_select,
        "tokens_per_s": res.tokens_per_s,
        "wall_s": wall,
        "explained_variance": res.metrics.get("explained_variance"),
    }
    finish(a, result, "tokens", "topk_select", "tokens_per_s", "wall_s", "explained_variance")


if __name__ == "__main__":
    main()
