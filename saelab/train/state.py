"""Training state and optimiser: one pytree that jit donates, orbax saves and shardings describe."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from saelab.sae import CLTParams, SAEParams, unit_norm_decoder
from saelab.sae.clt_train import clt_unit_norm_decoder
from saelab.train.config import OptimConfig


class TrainState(NamedTuple):
    params: SAEParams | CLTParams
    opt_state: optax.OptState
    step: jax.Array  # () int32
    since_fired: jax.Array  # (d_sae,) int32 training tokens since each latent last fired (capped); a CLT's (L * d_sae,)
    window_counts: jax.Array  # (d_sae,) float32 firings since the last metrics log (dense fraction)
    rng: jax.Array  # (2,) uint32 key data; spent only at initialisation, kept for exact resumes


def learning_rate(o: OptimConfig, steps: int) -> optax.Schedule:
    """Linear warm-up to `lr`, then constant, cosine or linear decay to `final_lr_fraction * lr`."""
    decay_steps = max(steps - o.warmup_steps, 1)
    end = o.lr * o.final_lr_fraction
    if o.decay == "cosine":
        after = optax.cosine_decay_schedule(o.lr, decay_steps, alpha=o.final_lr_fraction)
    elif o.decay == "linear":
        after = optax.linear_schedule(o.lr, end, decay_steps)
    else:
        after = optax.constant_schedule(o.lr)
    if o.warmup_steps == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, o.lr, o.warmup_steps), after], [o.warmup_steps])


def make_optimizer(o: OptimConfig, steps: int, unit_norm: bool, clt: bool = False) -> optax.GradientTransformation:
    """Global-norm clipping (if set) then Adam on the schedule, inside OpenAI's unit-norm decoder
    constraint when asked (over a CLT's tuple of decoders with `clt`); thresholds and all params stay float32."""
    parts = [optax.clip_by_global_norm(o.grad_clip)] if o.grad_clip else []
    parts.append(optax.adam(learning_rate(o, steps), b1=o.b1, b2=o.b2, eps=o.eps))
    tx = optax.chain(*parts)
    if not unit_norm:
        return tx
    return clt_unit_norm_decoder(tx) if clt else unit_norm_decoder(tx)


def init_state(params: SAEParams | CLTParams, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    d_sae = params.d_sae  # every latent: a CLT's L * d_sae, layer-major
    return TrainState(
        params=params,
        opt_state=tx.init(params),
        step=jnp.zeros((), jnp.int32),
        since_fired=jnp.zeros((d_sae,), jnp.int32),
        window_counts=jnp.zeros((d_sae,), jnp.float32),
        rng=jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key,
    )
