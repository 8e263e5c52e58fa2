"""A SAELens TopK SAE trained on one of our activation stores, for side-by-side comparisons.

SAELens's own trainer (`SAETrainer.fit()`) is fed the batches our loader yields (same seed, same order, BOS
excluded) scaled by our input-scaling scalar. `settings` picks what SAELens is run with:

- "defaults": SAELens's documented defaults for everything not named in the config (TopK with
  `rescale_acts_by_decoder_norm`, decoder rows of norm 0.1, `b_dec` 0, AuxK coefficient 1.0, dead after 1,000
  steps);
- "matched": the settings that differ from saelab's TopK set to saelab's where SAELens exposes them: AuxK
  coefficient (1/32), dead-latent window (saelab's `dead_tokens` in steps) and the initial `b_dec` (the
  geometric median of the same store sample saelab's trainer draws, written into the parameter before
  training). What stays different: saelab keeps decoder rows at unit norm and removes the gradient's parallel
  component, SAELens divides by the row norms in the forward (`rescale_acts_by_decoder_norm`).

The export is SAELens's own: the input scaling folded with `fold_activation_norm_scaling_factor`, the
decoder norms folded by `save_inference_model`, so the files compute exactly what the trained SAE computes, on
raw activations, in SAELens and in saelab. Needs the `bench` extra (sae-lens).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import Field

from saelab.runtime.config import Config
from saelab.sae import TopKConfig
from saelab.store import ActivationLoader, ActivationStore

PeerSettings = Literal["defaults", "matched"]


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
    """Shuffle seed (the same as saelab's data.seed gives the same batches) and, matched, the b_dec sample's."""
    input_scaling: str = "sqrt_d"
    """As saelab's train.input_scaling: the batches are pre-scaled by the same scalar."""
    settings: PeerSettings = "defaults"
    """defaults: SAELens's own for everything not named here; matched: AuxK coefficient, dead window and
    initial b_dec set to saelab's (the module docstring lists what stays different)."""
    dead_tokens: int = Field(default=1_000_000, ge=1)
    """matched: saelab's train.dead_tokens, turned into SAELens's dead_feature_window in steps."""
    device: str = "cpu"
    """torch device SAELens trains on (cpu, cuda, cuda:1); batches are read on the host and moved there."""
    checkpoint_tokens: list[int] = []
    """Also export the SAE as it was after each of these token counts (to `out/../{name}-at-{tokens}`), for
    quality at several budgets from one run; SAELens's learning rate is constant by default."""
    out: Path
    """Where the SAELens-format SAE is written."""


class Trained(NamedTuple):
    sae: Any  # sae_lens TopKTrainingSAE, in the scaled input space
    scale: float
    tokens_per_s: float  # from the second batch on (the first step's warm-up excluded)


def saelens_settings(cfg: SAELensTrainConfig) -> dict[str, dict[str, Any]]:
    """The SAELens config fields this comparison sets, per SAELens class: what a reader needs to rerun it."""
    sae: dict[str, Any] = {"k": cfg.k, "dtype": "float32", "device": cfg.device, "normalize_activations": "none"}
    trainer: dict[str, Any] = {"lr": cfg.lr, "lr_end": cfg.lr, "device": cfg.device}
    if cfg.settings == "matched":
        sae["aux_loss_coefficient"] = TopKConfig.model_fields["aux_coefficient"].default
        trainer["dead_feature_window"] = max(cfg.dead_tokens // cfg.batch_size, 1)
    return {"TopKTrainingSAEConfig": sae, "SAETrainerConfig": trainer}


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

    settings = saelens_settings(cfg)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=cfg.expansion * d, **settings["TopKTrainingSAEConfig"]))
    if cfg.settings == "matched":
        with torch.no_grad():
            sae.b_dec.copy_(torch.tensor(matched_b_dec(store, hook, cfg.seed, scale)))
    trainer = SAETrainer(
        SAETrainerConfig(
            total_training_samples=cfg.tokens,
            train_batch_size_samples=cfg.batch_size,
            **settings["SAETrainerConfig"],
        ),
        sae,
        batches() if data is None else data,
    )
    return trainer, scale, arrivals


def matched_b_dec(store: ActivationStore, hook: str, seed: int, scale: float) -> np.ndarray:
    """saelab's initial b_dec (train.b_dec_init = "geometric_median"): the geometric median of the same
    seeded sample of store rows (BOS excluded), in the scaled space."""
    from saelab.sae import geometric_median
    from saelab.train.init_b_dec import B_DEC_SAMPLE

    idx = store.train_indices(False)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(idx, size=min(B_DEC_SAMPLE, len(idx)), replace=False))
    x = store.activations(hook).take(sample, np.float32) * np.float32(scale)
    return np.asarray(geometric_median(x), np.float32)


def train(cfg: SAELensTrainConfig, on_tokens=None) -> Trained:
    """SAELens's TopK trainer (`fit()`) on our batches, pre-scaled. `on_tokens(tokens, sae)` is called after
    the step that reaches each of `cfg.checkpoint_tokens` (SAELens's `save_checkpoint_fn` hook)."""
    trainer, scale, arrivals = make_trainer(cfg)
    if cfg.checkpoint_tokens:
        _checkpoint_at(trainer, sorted(cfg.checkpoint_tokens), lambda n: on_tokens(n, trainer.sae, scale))
    trainer.fit()
    steps = cfg.tokens // cfg.batch_size
    rate = (steps - 1) * cfg.batch_size / (time.perf_counter() - arrivals[1]) if steps > 1 else 0.0
    return Trained(trainer.sae, scale, rate)


def _checkpoint_at(trainer, tokens: list[int], callback) -> None:
    """Make SAELens's fit() call `callback(n)` once `n_training_samples` reaches each of `tokens`, through its
    own checkpoint thresholds (strictly exceeded, checked after each step) instead of its checkpoint files."""
    trainer.checkpoint_thresholds = [n - 1 for n in tokens]
    pending = list(tokens)
    trainer.save_checkpoint = lambda checkpoint_name, **_: callback(pending.pop(0))


def export(sae, scale: float, out: Path, metadata: dict[str, Any]) -> Path:
    """Write a copy of a trained SAELens TopK SAE as SAELens's own inference files, for raw activations:
    input scale folded (`fold_activation_norm_scaling_factor`), decoder norms folded (`save_inference_model`),
    our metadata added to cfg.json. Written beside `out` and moved into place, so a crash leaves no half
    export; the trained SAE is left unchanged."""
    from sae_lens import TopKTrainingSAE

    if not isinstance(sae, TopKTrainingSAE):
        raise TypeError(f"saelab.peers exports SAELens TopK SAEs only, got {type(sae).__name__}")
    folded = copy.deepcopy(sae)
    folded.fold_activation_norm_scaling_factor(scale)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _, cfg_path = folded.save_inference_model(tmp)
    written = json.loads(Path(cfg_path).read_text())
    written["metadata"] = {**written.get("metadata", {}), **metadata}
    Path(cfg_path).write_text(json.dumps(written, indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def run(cfg: SAELensTrainConfig) -> Path:
    """Train and write the SAE (raw-activation scale) to `cfg.out`, and the `checkpoint_tokens` snapshots."""
    store = ActivationStore(cfg.store)
    hook = cfg.hook or store.hooks[0]
    meta = store.meta
    trainer_name = "saelens" if cfg.settings == "defaults" else f"saelens-{cfg.settings}"

    def metadata(tokens: int, tokens_per_s: float | None = None) -> dict[str, Any]:
        return {
            "model_name": meta.get("model"),
            "hook_name": hook,
            "context_size": meta.get("context"),
            "prepend_bos": True,
            "dataset_path": str(cfg.store),
            "training_tokens": tokens,
            "trainer": trainer_name,
            "peer_settings": saelens_settings(cfg),
            **({"tokens_per_s": tokens_per_s} if tokens_per_s is not None else {}),
        }

    def snapshot(tokens: int, sae, scale: float) -> None:
        export(sae, scale, cfg.out.with_name(f"{cfg.out.name}-at-{tokens}"), metadata(tokens))

    t = train(cfg, on_tokens=snapshot)
    return export(t.sae, t.scale, cfg.out, metadata(cfg.tokens, t.tokens_per_s))
