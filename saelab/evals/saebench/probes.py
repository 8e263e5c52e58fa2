"""SAEBench's one-vs-rest logistic-regression probes trained by gradient descent (sae-bench 0.6
`evals/absorption/probing.py`, `train_multi_probe`): one linear layer with an output per class, BCE with logits
weighted by `n_neg / n_pos` per class, Adam with coupled L2 weight decay (PyTorch's `Adam(weight_decay=...)`), the
learning rate decayed exponentially per epoch from `lr` to `end_lr`, the data shuffled every epoch, an optional
L1 penalty `l1 * mean_class(sum |w|)` (`train_sparse_multi_probe`). Written in JAX: one jitted epoch scans the
minibatches (the last, short one masked), initialisation as `torch.nn.Linear` (uniform +-1/sqrt(d_in))."""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class ProbeConfig(NamedTuple):
    """sae-bench's settings: the first-letter probe (batch 64, weight decay 1e-4) by default."""

    num_epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-2
    end_lr: float = 1e-5
    weight_decay: float = 1e-4
    l1: float = 0.0


FIRST_LETTER = ProbeConfig()


class Probe(NamedTuple):
    weight: jax.Array  # (num_classes, d_in)
    bias: jax.Array  # (num_classes,)

    def scores(self, x: jax.Array) -> jax.Array:
        """(n, d_in) -> (n, num_classes) logits."""
        return x @ self.weight.T + self.bias


def probe_loss(probe: Probe, x: jax.Array, y: jax.Array, pos_weight: jax.Array, mask: jax.Array, l1: float):
    """Mean pos-weighted BCE over the unmasked rows and every class, plus the L1 term; x (b, d), y (b, c)."""
    logits = probe.scores(x)
    log_p, log_not_p = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    bce = -(pos_weight * y * log_p + (1 - y) * log_not_p)  # (b, c), torch's BCEWithLogitsLoss(pos_weight)
    data = jnp.sum(bce * mask[:, None]) / (jnp.sum(mask) * y.shape[1])
    return data + l1 * jnp.abs(probe.weight).sum(-1).mean()


def train_probe(x: np.ndarray, y: np.ndarray, cfg: ProbeConfig = FIRST_LETTER, seed: int = 42) -> Probe:
    """Fit a probe on x (n, d_in) and y (n, num_classes) in {0, 1} (one-hot or multi-hot)."""
    n, d = x.shape
    c = y.shape[1]
    key_w, key_b, key = jax.random.split(jax.random.key(seed), 3)
    bound = 1 / math.sqrt(d)
    probe = Probe(
        jax.random.uniform(key_w, (c, d), jnp.float32, -bound, bound),
        jax.random.uniform(key_b, (c,), jnp.float32, -bound, bound),
    )
    y = jnp.asarray(y, jnp.float32)
    pos = y.sum(0)
    pos_weight = (n - pos) / pos
    opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.scale_by_adam(), optax.scale(-1.0))
    state = opt.init(probe)
    gamma = math.exp(math.log(cfg.end_lr / cfg.lr) / cfg.num_epochs)
    steps = -(-n // cfg.batch_size)
    x = jnp.asarray(x, jnp.float32)
    for epoch in range(cfg.num_epochs):
        key, sub = jax.random.split(key)
        order = jnp.pad(jax.random.permutation(sub, n), (0, steps * cfg.batch_size - n), constant_values=-1)
        lr = cfg.lr * gamma**epoch
        probe, state = _epoch(probe, state, x, y, pos_weight, order.reshape(steps, -1), lr, cfg.l1, opt)
    return probe


@partial(jax.jit, static_argnames=("opt",))
def _epoch(probe, state, x, y, pos_weight, order, lr, l1, opt):
    """One pass over the minibatches `order` (steps, batch) of row indices (-1: padding)."""

    def step(carry, idx):
        probe, state = carry
        mask = (idx >= 0).astype(jnp.float32)
        rows = jnp.maximum(idx, 0)
        grads = jax.grad(probe_loss)(probe, x[rows], y[rows], pos_weight, mask, l1)
        updates, state = opt.update(grads, state, probe)
        probe = optax.apply_updates(probe, jax.tree.map(lambda u: lr * u, updates))
        return (probe, state), None

    (probe, state), _ = jax.lax.scan(step, (probe, state), order)
    return probe, state
