"""On-the-fly training (`data.source = "model"`) against harvest-then-train, on the same tokens, in one run.

Both sides train the same TopK SAE (batch 4096, expansion 8) on the residual stream of layer L for the same
number of training tokens from the same Python-docstring windows (context 128, 16 windows per forward). The
store side harvests those windows (`saelab.harvest.run`, bfloat16 store, the default) and then trains on the
store (`saelab.train.run`); the on-the-fly side trains straight from the model through a shuffle buffer of
`--buffer` batches. Model loading is excluded from both (the model is loaded once, before the clock); forward
and train-step compilation are inside both. Reported: end-to-end training tokens per second (harvest time +
train time for the store side) and their ratio, and each train loop's steady rate (compilation excluded).

    python experiments/bench/train_stream.py [--quick] [--tokens N] [--layer 6] [--buffer 16]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import finish, parser  # noqa: E402

from saelab.runtime.hugepages import reexec_with_hugepages  # noqa: E402

BATCH, CONTEXT, WINDOWS = 4096, 128, 16


def main() -> None:
    reexec_with_hugepages(wanted=True)  # both sides under huge pages, as `saelab train --hugepages`
    ap = parser(__doc__, "train_stream", "16,384 training tokens at layer 3, buffer 2", layer=6, buffer=16)
    ap.add_argument("--tokens", type=int, help="training tokens (default 262,144; quick 16,384)")
    a = ap.parse_args()
    tokens = a.tokens or (16_384 if a.quick else 262_144)
    layer, buffer = (3, 2) if a.quick else (a.layer, a.buffer)
    hook = f"blocks.{layer}.hook_resid_post"

    from saelab import train
    from saelab.harvest import HarvestConfig
    from saelab.harvest import run as harvest
    from saelab.train.stream import load_model

    model = load_model(a.model, "float32")  # shared by both sides; loading is not timed
    with tempfile.TemporaryDirectory() as tmp:
        common = [
            f"data.hook='{hook}'",
            f"data.batch_size={BATCH}",
            "sae.architecture='topk'",
            "sae.k=32",
            "sae.expansion=8",
            f"train.tokens={tokens}",
            f"train.log_every={tokens // BATCH}",
            f"train.checkpoint_every={tokens // BATCH}",
            "train.wandb='disabled'",
            "train.progress=false",
            f"train.out='{tmp}'",
        ]
        # The store holds BOS rows too (left out of training): harvest enough windows for `tokens` others.
        windows = -(-tokens // (CONTEXT - 1))
        cfg = HarvestConfig(
            model=a.model, hooks=[hook], tokens=windows * CONTEXT, context=CONTEXT, batch=WINDOWS, out=Path(tmp) / "s"
        )
        t = time.perf_counter()
        harvest(cfg, model=model, progress=False)
        harvest_s = time.perf_counter() - t
        t = time.perf_counter()
        store_run = train.run(train.load_config(None, [*common, f"data.store='{cfg.out}'", "train.name='store'"]))
        store_train_s = time.perf_counter() - t
        fly = [
            "data.source='model'",
            f"data.model='{a.model}'",
            f"data.context={CONTEXT}",
            f"data.model_batch={WINDOWS}",
            f"data.buffer_batches={buffer}",
        ]
        t = time.perf_counter()
        fly_run = train.run(train.load_config(None, [*common, *fly, "train.name='fly'"]))
        fly_s = time.perf_counter() - t
    result = {
        "bench": "train_stream",
        "model": a.model,
        "hook": hook,
        "training_tokens": tokens,
        "batch": BATCH,
        "context": CONTEXT,
        "windows_per_forward": WINDOWS,
        "buffer_batches": buffer,
        "sae": "topk k=32 expansion 8",
        "store_dtype": "bfloat16",
        "harvest_s": harvest_s,
        "store_train_s": store_train_s,
        "harvest_then_train_tokens_per_s": tokens / (harvest_s + store_train_s),
        "on_the_fly_s": fly_s,
        "on_the_fly_tokens_per_s": tokens / fly_s,
        "ratio_on_the_fly_vs_harvest_then_train": (harvest_s + store_train_s) / fly_s,
        "store_train_loop_tokens_per_s": store_run.tokens_per_s,
        "on_the_fly_train_loop_tokens_per_s": fly_run.tokens_per_s,
    }
    finish(
        a,
        result,
        "on_the_fly_tokens_per_s",
        "harvest_then_train_tokens_per_s",
        "ratio_on_the_fly_vs_harvest_then_train",
        "harvest_s",
        "store_train_s",
        "on_the_fly_s",
    )


if __name__ == "__main__":
    main()
