"""A world's samples written into a saelab activation store, so `saelab train`, `train-multi` and the SAELens
peer (`saelab.peers.saelens`) train on the same samples in the same (globally shuffled) order.

Each row is one sample x = a F + b under the hook `HOOK`; its `doc` is the sample's index, its `pos` 1 (no
row is a BOS, which stores mark with position 0), its token 0. Batch i of the stream is
`fold_in(key(seed), i)`, and shards hold whole batches, so an interrupted write resumes where it stopped and
gives the same bytes. The world's config and a hash of its features go into the store's meta: a store of
another world, seed or size is refused unless overwritten.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jax
import numpy as np

from saelab.store import StoreWriter
from saelab.synth.sample import sampler
from saelab.synth.world import World

HOOK = "synthetic"  # the store's one hook: a world's samples


def write_store(
    world: World,
    path: str | Path,
    n_samples: int,
    *,
    seed: int = 0,
    batch: int = 4096,
    shard_batches: int = 16,
    dtype: str = "float32",
    overwrite: bool = False,
    progress=None,
) -> Path:
    """Write `n_samples` samples of `world` (stream `seed`) into the store at `path`; resumes a partial one.
    `progress(done, total)` is called after each batch."""
    meta = {
        "model": f"synth:{world_hash(world)}",
        "weights_hash": world_hash(world),
        "context": 2,  # a nominal window: pos 1 only, no BOS
        "bos_id": None,
        "synthetic_world": world.cfg.model_dump(mode="json"),
        "synthetic_seed": seed,
        "synthetic_samples": n_samples,
    }
    w = StoreWriter.create_or_resume(
        path,
        meta=meta,
        hooks=[HOOK],
        d_model=world.hidden_dim,
        dtype=dtype,
        shard_tokens=batch * shard_batches,
        overwrite=overwrite,
    )
    if w.complete:
        return Path(path)
    draw = sampler(world, batch)
    root = jax.random.key(seed)
    done = w.n_tokens_done
    for i in range(done // batch, -(-n_samples // batch)):
        m = min(batch, n_samples - i * batch)
        x = np.asarray(draw(jax.random.fold_in(root, i)).hidden[:m])  # (m, d)
        index = np.arange(i * batch, i * batch + m)
        w.append({HOOK: x}, tokens=np.zeros(m, np.int32), doc=index, pos=np.ones(m, np.int32))
        if progress is not None:
            progress(i * batch + m, n_samples)
    w.finalize()
    return Path(path)


def world_hash(world: World) -> str:
    """sha256 (16 hex digits) of the world's features, bias and firing probabilities."""
    h = hashlib.sha256()
    for a in (world.features, world.bias, world.probs):
        h.update(np.ascontiguousarray(np.asarray(a, np.float32)).tobytes())
    return h.hexdigest()[:16]
