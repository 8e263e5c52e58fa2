"""A small jitted trainer for many SAEs on tiny, fixed activation sets M (the atoms paper's regime, issue 15).

The store-based trainer (saelab.train) streams shards and checkpoints; here M has a few thousand rows held in
memory and each SAE is trained on it for many epochs, so the whole loop is one jitted `lax.scan` and the SAEs
of one architecture and width are trained together under `vmap` (one compile for every |M|). The SAE math is
the registry's (`get_architecture(...).loss`, `init_params`, `unit_norm_decoder`, `fold_input_scaling`).

- Minibatches of `batch` rows are drawn with replacement from each set (a set smaller than `batch` is seen
  about whole every step); inputs are scaled as the architecture's registry entry says (`input_scaling`),
  and the scale is folded back into the returned parameters, which take raw activations.
- Target-L0 controller (for architectures with a sparsity coefficient: relu, jumprelu): the coefficient is
  multiplied by c = exp(u), and after every step u += rate * (log(L0_batch + 0.1) - log(target)), an integral
  controller in log space, so c grows while the batch L0 is above the target and shrinks below it.
- init "data" (the default): the first min(n, d_sae) decoder rows are distinct rows of the set, centred on its
  mean and scaled to unit norm, the rest as the registry draws them, the encoder tied (W_enc = W_dec^T); the
  data-initialised dictionary of K-SVD (Aharon et al. 2006), which converges in a few hundred steps where a
  random start needs many thousands. "registry" is `init_params` as it is (random directions).
- TopK's AuxK sees the latents that have not fired for `dead_steps` steps as dead.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from saelab.sae import AuxState, SAEConfig, SAEParams, get_architecture, init_params, unit_norm_decoder
from saelab.sae.scaling import fold_input_scaling, input_scale

_MAX_LOG_C = 12.0  # the controller multiplier stays within e^-12 .. e^12 of the configured coefficient


class FitOptions(NamedTuple):
    """How each SAE is trained on its set."""

    steps: int = 1000  # optimiser steps
    batch: int = 256  # rows per step, drawn with replacement
    lr: float = 1e-3  # Adam learning rate
    target_l0: float | None = None  # controller target; None keeps the configured coefficient
    rate: float = 0.02  # controller gain on log(L0 / target) per step
    dead_steps: int = 50  # TopK AuxK: steps without firing before a latent counts as dead
    init: Literal["registry", "data"] = "data"  # decoder rows: registry init, or rows of the set (below)
    seed: int = 0


class FitResult(NamedTuple):
    """One trained SAE and how its training went."""

    params: SAEParams  # for raw activations (input scaling folded in)
    l0: float  # mean batch L0 over the last tenth of the steps
    mse: float  # mean batch mse (scaled inputs) over the last tenth of the steps
    coefficient_scale: float  # final controller multiplier c of the sparsity coefficient (1 without it)
    l0_trace: np.ndarray  # (steps,) batch L0 per step
    seconds: float  # wall time of the fit, compile included, shared by the SAEs fitted together


class _State(NamedTuple):
    params: SAEParams
    opt_state: optax.OptState
    log_c: jax.Array  # () controller log-multiplier
    since_fired: jax.Array  # (d_sae,) steps since each latent last fired


def fit(cfg: SAEConfig, sets: list[np.ndarray], options: FitOptions | None = None) -> list[FitResult]:
    """Train one SAE of `cfg` on each activation set (n_i, d_in), all under one vmap; results in order."""
    options = options or FitOptions()
    if not sets:
        raise ValueError("fit needs at least one activation set")
    for i, X in enumerate(sets):
        if X.ndim != 2 or X.shape[1] != cfg.d_in or X.shape[0] < 1:
            raise ValueError(f"activation set {i} must be (n >= 1, d_in={cfg.d_in}), got {X.shape}")
    arch = get_architecture(cfg.architecture)
    if options.target_l0 is not None and not {"l1_coefficient", "l0_coefficient"} & type(cfg).model_fields.keys():
        raise ValueError(f"target_l0 needs a sparsity coefficient; {cfg.architecture} has none (use k for topk)")
    t0 = time.perf_counter()
    n = np.array([X.shape[0] for X in sets], np.int32)
    Xs = np.zeros((len(sets), int(n.max()), cfg.d_in), np.float32)  # (sets, n_max, d_in), zero padded
    for i, X in enumerate(sets):
        Xs[i, : n[i]] = X
    target = "unit" if arch.input_scaling == "unit" else "d_in"
    scales = jnp.stack([input_scale(jnp.asarray(X), target) if arch.input_scaling != "none" else 1.0 for X in sets])
    tx = optax.adam(options.lr)
    if arch.unit_norm_decoder:
        tx = unit_norm_decoder(tx)
    keys = jax.random.split(jax.random.PRNGKey(options.seed), len(sets))
    Xs_j, n_j = jnp.asarray(Xs), jnp.asarray(n)
    init = partial(_init, cfg, tx, options.init == "data")
    states = jax.vmap(init)(keys, Xs_j * scales[:, None, None], n_j)
    states, (l0s, mses) = jax.block_until_ready(_train(cfg, tx, options, states, Xs_j, n_j, scales, keys))
    seconds = time.perf_counter() - t0
    tail = max(1, options.steps // 10)
    out = []
    for i in range(len(sets)):
        p = jax.tree.map(lambda a, i=i: a[i], states.params)
        out.append(
            FitResult(
                params=fold_input_scaling(p, scales[i]),
                l0=float(l0s[i, -tail:].mean()),
                mse=float(mses[i, -tail:].mean()),
                coefficient_scale=float(jnp.exp(states.log_c[i])),
                l0_trace=np.asarray(l0s[i]),
                seconds=seconds,
            )
        )
    return out


def _init(
    cfg: SAEConfig, tx: optax.GradientTransformation, from_data: bool, key: jax.Array, X: jax.Array, n: jax.Array
) -> _State:
    """Registry init with b_dec at the set's mean (X is zero padded past row n), decoder rows from the set
    when `from_data`."""
    mean = X.sum(0) / n  # (d_in,)
    k_init, k_perm = jax.random.split(key)
    params = init_params(k_init, cfg, mean)
    if from_data:
        rows = jnp.arange(cfg.d_sae)
        pick = jnp.argsort(jnp.where(jnp.arange(X.shape[0]) < n, jax.random.uniform(k_perm, (X.shape[0],)), 2.0))
        src = X[pick[jnp.minimum(rows, X.shape[0] - 1)]] - mean  # (d_sae, d_in) shuffled rows of the set
        src = src / jnp.maximum(jnp.linalg.norm(src, axis=1, keepdims=True), 1e-30)
        W = jnp.where((rows < n)[:, None], src, params.W_dec / cfg.dec_init_norm)
        params = params._replace(W_dec=W, W_enc=W.T)
    elif get_architecture(cfg.architecture).unit_norm_decoder:
        W = params.W_dec / jnp.linalg.norm(params.W_dec, axis=1, keepdims=True)
        params = params._replace(W_dec=W, W_enc=W.T)
    return _State(params, tx.init(params), jnp.zeros((), jnp.float32), jnp.zeros((cfg.d_sae,), jnp.int32))


@partial(jax.jit, static_argnums=(0, 1, 2))
def _train(
    cfg: SAEConfig,
    tx: optax.GradientTransformation,
    options: FitOptions,
    states: _State,
    Xs: jax.Array,  # (sets, n_max, d_in) raw
    n: jax.Array,  # (sets,)
    scales: jax.Array,  # (sets,)
    keys: jax.Array,  # (sets, 2)
) -> tuple[_State, tuple[jax.Array, jax.Array]]:
    """`options.steps` steps of every SAE; returns the states and (sets, steps) batch L0 and mse."""
    arch = get_architecture(cfg.architecture)
    log_target = None if options.target_l0 is None else jnp.log(jnp.float32(options.target_l0))

    def one_step(state: _State, X: jax.Array, n_i: jax.Array, s: jax.Array, key: jax.Array):
        idx = jax.random.randint(key, (options.batch,), 0, n_i)
        x = X[idx] * s  # (batch, d_in) scaled
        aux = AuxState(state.since_fired >= options.dead_steps, jnp.exp(state.log_c))
        (_, out), grads = jax.value_and_grad(arch.loss, has_aux=True)(state.params, x, cfg, aux)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = arch.update_threshold(optax.apply_updates(state.params, updates), out, cfg)
        log_c = state.log_c
        if log_target is not None:
            log_c = jnp.clip(log_c + options.rate * (jnp.log(out.l0 + 0.1) - log_target), -_MAX_LOG_C, _MAX_LOG_C)
        since = jnp.where(out.latent_counts > 0, 0, state.since_fired + 1)
        return _State(params, opt_state, log_c, since), (out.l0, out.mse)

    def scan_step(states: _State, t: jax.Array):
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys)
        return jax.vmap(one_step)(states, Xs, n, scales, step_keys)

    states, (l0, mse) = jax.lax.scan(scan_step, states, jnp.arange(options.steps))
    return states, (l0.T, mse.T)
