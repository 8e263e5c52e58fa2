"""Harvest throughput against transformers + torch forward hooks, and activation-loader batches/s.

Both sides get the same packed windows of Python docstrings (batch 16, context 128) from the same GGUF
model and write layer L's residual stream as bfloat16 to disk. saelab runs its real harvester
(`saelab.harvest.run`: forward stopped after layer L, pipelined shard writes, checksums, statistics);
the peer runs transformers with a forward hook that stops the pass at layer L (the fastest way peers harvest)
and writes each batch into a memory-mapped file. Model loading is excluded from both. Then the loader reads
4096-token globally shuffled batches from the new store, as training does.

`--bf16` runs both models in bfloat16 (saelab: `saelab harvest --model-dtype bfloat16`; the peer: the same
checkpoint cast to torch.bfloat16); the default is float32 on both sides. `--device cuda` puts the torch peer on
that device (saelab runs on JAX's default device: the GPU when jax[cuda12] is installed).

    python experiments/bench/harvest.py [--quick] [--tokens N] [--layer 6] [--bf16] [--device cpu]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import StopForward, finish, parser, torch_model  # noqa: E402


def main() -> None:
    ap = parser(__doc__, "harvest", "32,768 tokens", layer=6, loader_batches=200)
    ap.add_argument("--tokens", type=int, help="tokens to harvest (default 131,072; quick 32,768)")
    ap.add_argument("--bf16", action="store_true", help="both models compute in bfloat16 (default float32)")
    ap.add_argument("--device", default="cpu", help="torch device of the peer (cpu, cuda)")
    a = ap.parse_args()
    model_dtype = "bfloat16" if a.bf16 else "float32"
    n_tokens = a.tokens or (32_768 if a.quick else 131_072)
    batch, context = 16, 128
    hook = f"blocks.{a.layer}.hook_resid_post"

    from saelab.harvest import HarvestConfig
    from saelab.harvest import run as harvest
    from saelab.models import Model

    model = Model.load(a.model, dtype=model_dtype)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = HarvestConfig(
            model=a.model,
            hooks=[hook],
            tokens=n_tokens,
            context=context,
            batch=batch,
            model_dtype=model_dtype,
            out=Path(tmp) / "store",
        )
        t = time.perf_counter()
        harvest(cfg, model=model, progress=False)
        ours_s = time.perf_counter() - t
        peer = Path(tmp) / "peer.bin"
        peer_s = torch_harvest(a.model, a.layer, model, n_tokens, batch, context, peer, model_dtype, a.device)
        loader_bps, batches = loader_rate(Path(tmp) / "store", hook, a.loader_batches)
    result = {
        "bench": "harvest",
        "model": a.model,
        "hook": hook,
        "tokens": n_tokens,
        "batch": batch,
        "context": context,
        "stored_dtype": "bfloat16",
        "model_dtype": model_dtype,
        "torch_device": a.device,
        "saelab_tokens_per_s": n_tokens / ours_s,
        "torch_tokens_per_s": n_tokens / peer_s,
        "ratio_saelab_vs_torch": peer_s / ours_s,
        "loader_batch_tokens": 4096,
        "loader_batches_per_s": loader_bps,
        "loader_batches_timed": batches,
    }
    keys = ("model_dtype", "saelab_tokens_per_s", "torch_tokens_per_s", "ratio_saelab_vs_torch", "loader_batches_per_s")
    finish(a, result, *keys)


def torch_harvest(
    name: str, layer: int, model, n_tokens: int, batch: int, context: int, out: Path, dtype: str, device: str
) -> float:
    """Seconds for transformers + a stopping forward hook (model in `dtype` on `device`) to harvest the same
    windows into a bf16 memmap."""
    import torch

    from saelab.data import open_corpus, pack_for_model

    hf = torch_model(name).to(device=device, dtype=getattr(torch, dtype))
    d = hf.config.hidden_size
    sink = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint16, shape=(n_tokens, d))
    captured = {}

    def grab(_m, _i, o):
        captured["x"] = o[0] if isinstance(o, tuple) else o
        raise StopForward

    handle = hf.model.layers[layer].register_forward_hook(grab)
    t = time.perf_counter()
    done = 0
    batches = pack_for_model(open_corpus("python-docs", "train"), model, context=context, batch=batch)
    with torch.inference_mode():
        for b in batches:
            try:
                hf(input_ids=torch.from_numpy(b.tokens.astype(np.int64)).to(device))
            except StopForward:
                pass
            x = captured["x"].reshape(-1, d).to("cpu", torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
            take = min(len(x), n_tokens - done)
            sink[done : done + take] = x[:take]
            done += take
            if done >= n_tokens:
                break
    sink.flush()
    handle.remove()
    return time.perf_counter() - t


def loader_rate(store_dir: Path, hook: str, n: int) -> tuple[float, int]:
    """4096-token shuffled batches per second from the store (first batch excluded)."""
    import jax

    from saelab.store import ActivationLoader, ActivationStore

    loader = ActivationLoader(ActivationStore(store_dir), hook, 4096, seed=0)
    jax.block_until_ready(next(loader).x)
    t = time.perf_counter()
    for _ in range(n):
        jax.block_until_ready(next(loader).x)
    rate = n / (time.perf_counter() - t)
    loader.close()
    return rate, n


if __name__ == "__main__":
    main()
