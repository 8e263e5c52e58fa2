"""A SAELens TopK SAE trained on one of our activation stores, for side-by-side comparisons.

SAELens's own trainer (`SAETrainer.fit()`, its defaults for everything not set here) is fed the batches our
loader yields (same seed, same order, BOS excluded) scaled by our input-scaling scalar, and the result is
written in SAELens format with the scaling folded in, so `saelab eval` and every analysis read it like ours.
Needs the `bench` extra (sae-lens).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import Field

from saelab.runtime.config import Config
from saelab.sae import SAEConfig, SAEParams, fold_input_scaling, save_saelens
from saelab.store import ActivationLoader, ActivationStore


class SAELensTrainConfig(Config):
    store: Path
    """Activation store made by `saelab harvest`."""
    hook: str | None = None
    """Hook to train on; None means the store's only hook."""
    k: int = Field(default=32, ge=1)
    expansion: int = Field(default=8, ge=1)
    tokens: int = Field(default=2_000_000, gt=0)
    batch_size: int = Field(default=4096, ge=1)
    lr: float = Field(default=3e-4, gt=0)
    seed: int = 0
    """Shuffle seed (the same as saelab's data.seed gives the same batches)."""
    input_scaling: str = "sqrt_d"
    """As saelab's train.input_scaling: the batches are pre-scaled by the same scalar."""
    out: Path
    """Where the SAELens-format SAE is written."""


class Trained(NamedTuple):
    sae: Any  # sae_lens TopKTrainingSAE, in the scaled input space
    scale: float
    tokens_per_s: float  # from the second batch on (the first step's warm-up excluded)


def make_trainer(cfg: SAELensTrainConfig, data=None):
    """(SAELens SAETrainer with its TopK training SAE, input scale, batch arrival times). `data` overrides the
    batch stream (an iterator of torch tensors already scaled); by default our loader's batches, pre-scaled."""
    import torch
    from sae_lens import SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig

    from saelab.train import input_scale

    store = ActivationStore(cfg.store)
    hook = cfg.hook or store.hooks[0]
    d = store.d_model
    scale = input_scale(store.stats(hook), cfg.input_scaling, d)
    loader = ActivationLoader(store, hook, cfg.batch_size, seed=cfg.seed)
    view = store.activations(hook)
    arrivals: list[float] = []

    def batches():
        step = 0
        while True:
            x = view.take(loader.global_indices(step), np.float32) * np.float32(scale)
            arrivals.append(time.perf_counter())
            step += 1
            yield torch.from_numpy(x)

    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(
            d_in=d, d_sae=cfg.expansion * d, k=cfg.k, dtype="float32", device="cpu", normalize_activations="none"
        )
    )
    trainer = SAETrainer(
        SAETrainerConfig(
            total_training_samples=cfg.tokens,
            train_batch_size_samples=cfg.batch_size,
            lr=cfg.lr,
            lr_end=cfg.lr,
            device="cpu",
        ),
        sae,
        batches() if data is None else data,
    )
    return trainer, scale, arrivals


def train(cfg: SAELensTrainConfig) -> Trained:
    """SAELens's TopK trainer (`fit()`) on our batches, pre-scaled."""
    trainer, scale, arrivals = make_trainer(cfg)
    trainer.fit()
    steps = cfg.tokens // cfg.batch_size
    rate = (steps - 1) * cfg.batch_size / (time.perf_counter() - arrivals[1]) if steps > 1 else 0.0
    return Trained(trainer.sae, scale, rate)


def run(cfg: SAELensTrainConfig) -> Path:
    """Train and write the SAE (raw-activation scale) to `cfg.out`."""
    t = train(cfg)
    store = ActivationStore(cfg.store)
    hook = cfg.hook or store.hooks[0]
    w = {k: v.detach().cpu().numpy() for k, v in t.sae.state_dict().items()}
    params = SAEParams(w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], None)
    ours = SAEConfig(architecture="topk", d_in=store.d_model, d_sae=cfg.expansion * store.d_model, k=cfg.k)
    meta = store.meta
    return save_saelens(
        cfg.out,
        fold_input_scaling(params, t.scale),
        ours,
        {
            "model_name": meta.get("model"),
            "hook_name": hook,
            "context_size": meta.get("context"),
            "prepend_bos": True,
            "dataset_path": str(cfg.store),
            "training_tokens": cfg.tokens,
            "trainer": "saelens",
            "tokens_per_s": t.tokens_per_s,
        },
    )
