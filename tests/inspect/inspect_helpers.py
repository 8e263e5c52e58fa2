"""Builders for the inspect tests: a synthetic store (random activations, documents ending inside windows) and
random SAEs. Random SAEs only check that numbers are computed right, never what a feature means."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from saelab.sae import get_architecture, init_params, sae_config, save_saelens
from saelab.store import StoreWriter

D, CONTEXT, N_WINDOWS = 24, 16, 40
HOOK = "blocks.0.hook_resid_post"
REAL_HOOK = "blocks.3.hook_resid_post"


def write_store(path: Path, n_windows: int = N_WINDOWS, d: int = D, model: str = "synthetic", seed: int = 0) -> Path:
    """Windows of CONTEXT tokens (BOS at pos 0), documents ending inside windows, heavy-tailed activations."""
    rng = np.random.default_rng(seed)
    n = n_windows * CONTEXT
    pos = np.tile(np.arange(CONTEXT), n_windows)
    doc = np.cumsum(rng.random(n) < 0.08)  # a new document every ~12 tokens, across window boundaries
    tokens = rng.integers(3, 90, n)
    tokens[pos == 0] = 1
    acts = (rng.standard_normal((n, d)) * rng.gamma(2.0, 1.0, (n, 1))).astype(np.float32)
    meta = {"model": model, "weights_hash": "abc", "context": CONTEXT, "bos_id": 1}
    w = StoreWriter.create_or_resume(
        path, meta=meta, hooks=[HOOK], d_model=d, dtype="float32", shard_tokens=CONTEXT * 7
    )  # shards that do not line up with batches
    w.append({HOOK: acts}, tokens=tokens, doc=doc, pos=pos)
    w.finalize()
    return path


def write_sae(
    path: Path,
    architecture: str = "topk",
    d_in: int = D,
    d_sae: int = 48,
    k: int = 4,
    meta: dict | None = None,
    seed: int = 0,
) -> Path:
    k_field = {"k": k} if "k" in get_architecture(architecture).config.model_fields else {}
    cfg = sae_config(architecture=architecture, d_in=d_in, d_sae=d_sae, **k_field)
    params = init_params(jax.random.key(seed), cfg)
    if architecture == "relu":  # shift the encoder bias so only some latents fire on each token
        params = params._replace(b_enc=params.b_enc - 0.15)
    meta = {"model_name": "synthetic", "hook_name": HOOK, "weights_hash": "abc"} if meta is None else meta
    return save_saelens(path, params, cfg, meta)


def real_store_and_sae(root: Path, tokens: int, d_sae: int) -> tuple[Path, Path]:
    """(store, SAE) under `root`: `tokens` python-docs tokens of SmolLM2 at REAL_HOOK, and a random TopK SAE
    (k=8) of `d_sae` latents over them, named after the model and hook."""
    from saelab.harvest import HarvestConfig
    from saelab.harvest import run as harvest
    from saelab.models import Model

    model = Model.load("smollm2-135m")
    store = harvest(
        HarvestConfig(hooks=[REAL_HOOK], tokens=tokens, batch=8, context=64, out=root / "store"),
        model=model,
        progress=False,
    )
    meta = {"model_name": "smollm2-135m", "hook_name": REAL_HOOK, "weights_hash": model.weights_hash}
    return store, write_sae(root / "sae", d_in=model.cfg.d_model, d_sae=d_sae, k=8, meta=meta)
