"""SAEBench's meta-structure (Bussmann et al. 2025, arXiv 2503.17547, App. D.1; sae-bench 0.6
`evals/meta_structure/main.py`): a BatchTopK meta-SAE (width ceil(d_sae / 4), k 4) trained on the SAE's decoder rows
(1,500 Adam steps at lr 5e-4, batches of 1,024 rows drawn with replacement); the score is the fraction of the
decoder's variance it explains, `1 - sum ||d - d_hat||^2 / sum ||d - mean(d)||^2` over all rows, with the
meta-SAE's inference (threshold) codes. Trained with saelab's BatchTopK (AuxK off); sae-bench trains SAELens's,
which also rescales codes by decoder norms, so the two agree statistically, not bit for bit. Quick: 150 steps.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax

from saelab.evals.saebench.context import BenchContext
from saelab.sae import BatchTopKConfig, init_params
from saelab.sae import batchtopk as btk

K = 4
WIDTH_RATIO = 0.25
STEPS = 1500
BATCH = 1024
EVAL_BATCH = 4096
LR = 5e-4


def train_meta_sae(decoder: jax.Array, steps: int = STEPS, batch: int = BATCH, lr: float = LR, seed: int = 42):
    """(meta-SAE params, its config) trained on batches of `batch` rows of `decoder` (d_sae, d_in)."""
    width = max(math.ceil(decoder.shape[0] * WIDTH_RATIO), K)
    cfg = BatchTopKConfig(d_in=decoder.shape[1], d_sae=width, k=K, aux_coefficient=0.0)
    key, init_key = jax.random.split(jax.random.key(seed))
    params = init_params(init_key, cfg)
    opt = optax.adam(lr)
    state = opt.init(params)
    keys = jax.random.split(key, steps)
    params, _ = _train(params, state, decoder, keys, cfg, opt, batch)
    return params, cfg


@partial(jax.jit, static_argnames=("cfg", "opt", "batch"))
def _train(params, state, decoder, keys, cfg, opt, batch):
    def step(carry, key):
        params, state = carry
        rows = decoder[jax.random.randint(key, (batch,), 0, decoder.shape[0])]
        (_, out), grads = jax.value_and_grad(lambda p: btk.loss(p, rows, cfg, None, rows), has_aux=True)(params)
        grads = grads._replace(threshold=jnp.zeros_like(grads.threshold))
        updates, state = opt.update(grads, state, params)
        params = btk.update_threshold(optax.apply_updates(params, updates), out, cfg)
        return (params, state), None

    (params, state), _ = jax.lax.scan(step, (params, state), keys)
    return params, state


def reconstruct(params, decoder: jax.Array, cfg: BatchTopKConfig) -> jax.Array:
    """The meta-SAE's reconstruction of every decoder row, blocks of EVAL_BATCH rows through the batch rule."""
    blocks = [decoder[s : s + EVAL_BATCH] for s in range(0, decoder.shape[0], EVAL_BATCH)]
    return jnp.concatenate([_batch_recon(params, b, cfg) for b in blocks])


@partial(jax.jit, static_argnames=("cfg",))
def _batch_recon(params, rows: jax.Array, cfg: BatchTopKConfig) -> jax.Array:
    return btk.decode(params, btk.encode_train(params, rows, cfg).codes)


@jax.jit
def variance_explained(decoder: jax.Array, recon: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(fraction of the decoder's variance explained, mean squared error per element)."""
    resid = jnp.sum(jnp.square(decoder - recon))
    total = jnp.sum(jnp.square(decoder - decoder.mean(0, keepdims=True)))
    return jnp.where(total == 0, 0.0, 1 - resid / total), resid / decoder.size


def evaluate(ctx: BenchContext) -> dict[str, Any]:
    """The meta-SAE's decoder variance explained (weights only: the model is never loaded)."""
    decoder = jnp.asarray(ctx.sae.params.W_dec, jnp.float32)
    steps = ctx.sizes.meta_steps
    task = ctx.progress.add_task("meta-structure: meta-SAE", total=steps, info=f"{steps} steps")
    params, cfg = train_meta_sae(decoder, steps)
    ctx.progress.update(task, completed=steps)
    fve, mse = variance_explained(decoder, reconstruct(params, decoder, cfg))
    return {
        "decoder_fraction_variance_explained": float(fve),
        "final_reconstruction_mse": float(mse),
        "meta_width": cfg.d_sae,
        "steps": steps,
    }


def markdown(m: dict[str, Any]) -> str:
    """The report's meta-structure section."""
    return (
        f"Meta-SAE of width {m['meta_width']} (k {K}, {m['steps']} steps) on the decoder rows: "
        f"variance explained {m['decoder_fraction_variance_explained']:.4f}, "
        f"MSE {m['final_reconstruction_mse']:.3e}.\n"
    )
