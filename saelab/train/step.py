"""The train step: loss and gradients, optax update (with the decoder-norm constraint when the optimiser
carries it), BatchTopK threshold, dead-latent bookkeeping. The objective is the architecture's loss with its
AuxK term weighted as Gao et al. weigh it against the reconstruction (see `objective` in the step).

One jitted function per run; the state is donated, so parameters and optimiser moments are updated in
place. Inputs are scaled on the device by a constant (input scaling from the store's statistics).

A step whose loss, gradient norm or updated parameters are not finite changes nothing but the step counter
(`jnp.where` inside the step, as optax's `apply_if_finite` does) and reports `nonfinite` = 1 in its metrics;
the host reads that flag with the metrics it fetches anyway (`saelab.train.guard`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from saelab.sae import AuxKConfig, AuxState, CLTConfig, SAEConfig, architecture
from saelab.train.state import TrainState

_CAP = 1 << 30  # since_fired saturates here (int32)

Scale = float | tuple[float, ...]  # one input scale, or a CLT's one per layer


def scale_factor(scale: Scale) -> float | jax.Array:
    """What a batch is multiplied by: the scalar, or a CLT's per-layer scales as (L, 1), which broadcast over
    its (batch, L, d) batches."""
    return scale if isinstance(scale, (int, float)) else jnp.asarray(scale, jnp.float32)[:, None]


def make_train_step(
    sae: SAEConfig,
    tx: optax.GradientTransformation,
    *,
    scale: Scale,
    dead_tokens: int,
    sparsity_warmup_steps: int,
    out_scale: Scale | None = None,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """(state, x (batch, d_in) raw activations, y (batch, d_out) raw target or None) -> (state, metrics). Pure;
    jit it with donation. A transcoder's target y is scaled by `out_scale`, its hook's own scale; a CLT's x and y
    are (batch, L, d), scaled layer by layer when the scales are per-layer tuples."""
    arch = architecture(sae.architecture)
    aux_weight = _aux_weight(sae)
    scale, out_scale = scale_factor(scale), None if out_scale is None else scale_factor(out_scale)

    def step(state: TrainState, x: jax.Array, y: jax.Array | None = None) -> tuple[TrainState, dict[str, jax.Array]]:
        x = x.astype(jnp.float32) * scale
        if sae.is_transcoder and y is None:
            raise ValueError("a transcoder's train step needs the target batch y (data.target_hook)")
        y = None if y is None else y.astype(jnp.float32) * (scale if out_scale is None else out_scale)
        dead = state.since_fired >= dead_tokens  # (d_sae,)
        warm = 1.0 if sparsity_warmup_steps == 0 else jnp.minimum(1.0, (state.step + 1) / sparsity_warmup_steps)
        aux = AuxState(dead, jnp.asarray(warm, jnp.float32))
        target = () if y is None else (y,)
        var = _total_variance(x if y is None else y)

        def objective(params):
            loss, out = arch.loss(params, x, sae, aux, *target)
            # AuxK's weight (Gao et al. 2024, sec. A.2: alpha = 1/32) sits between two normalised mses, the
            # reconstruction's and AuxK's; saelab's reconstruction term is the plain per-token mse, so AuxK (a
            # normalised mse) is scaled by that mse's normaliser, the batch's total variance, to keep the paper's
            # ratio (without it AuxK is ~d times weaker and dead latents stay dead: docs/synth.md)
            return loss + (var - 1.0) * aux_weight * out.aux_loss, out

        (loss, out), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        params = arch.update_threshold(params, out, sae)
        fired = out.latent_counts > 0
        since = jnp.where(fired, 0, jnp.minimum(state.since_fired + x.shape[0], _CAP))
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        for leaf in jax.tree.leaves(params):
            finite &= jnp.isfinite(leaf).all()
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        new = TrainState(
            keep(params, state.params),
            keep(opt_state, state.opt_state),
            state.step + 1,
            keep(since, state.since_fired),
            keep(state.window_counts + out.latent_counts, state.window_counts),
            state.rng,
        )
        metrics = {
            "loss": loss,
            "mse": out.mse,
            "explained_variance": out.explained_variance,
            "nmse": out.nmse,
            "l0": out.l0,
            "sparsity_loss": out.sparsity_loss,
            "aux_loss": out.aux_loss,
            "dead_fraction": jnp.mean(since >= dead_tokens),
            "grad_norm": grad_norm,
            "nonfinite": (~finite).astype(jnp.float32),
        }
        return new, metrics

    return step


def _aux_weight(sae: SAEConfig) -> float:
    """The weight of the AuxK term the step adds: the TopK family's, and a TopK CLT's (its loss sums AuxK over
    source layers, each a normalised mse like an SAE's)."""
    if isinstance(sae, AuxKConfig) or (isinstance(sae, CLTConfig) and sae.activation == "topk"):
        return sae.aux_coefficient
    return 0.0


def _total_variance(x: jax.Array) -> jax.Array:
    """sum ||x - mean(x)||^2 / batch of a (batch, ...) batch, the normaliser of an mse (no gradient)."""
    x = jax.lax.stop_gradient(x)
    return jnp.sum(jnp.square(x - x.mean(0))) / x.shape[0]
