"""O'Neill & Bui's recipe exactly, as their public code (charlieoneill11/sae-circuits, src/) runs it.

- Head vectors: each head's `hook_result` averaged over every position of the prompt, the BOS included,
  raw (no centring, no rescaling).
- Prompts: 250 positive and 250 negative prompts are counted; the SAE trains on 10 vectors-of-heads drawn
  at random from those 500 together (`prepare_data`: a permutation, the first 10).
- SAE (`src/sae.py`): 200 latents, ReLU. A tied pre-bias b, initialised at zero, is subtracted before the
  encoder and added after the decoder. Encoder weight (latents, d) with unit-norm rows and a bias drawn
  uniformly in +-1/sqrt(d) (torch's Linear rule); decoder weight (d, latents), no bias, whose rows (one per
  input dimension, over latents) are held at unit norm: both linear maps renormalise their rows before each
  forward and remove the gradient component parallel to each row (a backward hook).
- Loss (`src/train.py`): element-mean squared error (`F.mse_loss`) + lambda * the mean over vectors of
  ||f||_1, lambda 0.02 (IOI, greater-than) or 0.05 (docstring). Adam, lr 1e-3, 500 full-batch epochs.
- Codes: argmax over latents (no "silent" code). Node score u_h = |P_h \\ N_h|, softmaxed over heads.
- Node from edges (`edge_circuit_prediction`): sort the n x n code-pair counts (self pairs 0), keep the
  top n^2/4 pairs, count each head's appearances in them, softmax.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from saelab.circuits.codes import CodesResult, code_scores, head_vectors
from saelab.circuits.sae import TrainResult
from saelab.circuits.tasks import TaskData
from saelab.models import Model

LATENTS, EPOCHS, LR = 200, 500, 1e-3
COUNT_PAIRS, TRAIN_VECTORS = 250, 10
L1 = {"ioi": 0.02, "greater-than": 0.02, "docstring": 0.05}


class PaperSAE(NamedTuple):
    """Parameters in the authors' layout (torch Linear weights are (out, in))."""

    W_enc: jax.Array  # (latents, d) rows held at unit norm
    b_enc: jax.Array  # (latents,)
    W_dec: jax.Array  # (d, latents) rows held at unit norm
    b_pre: jax.Array  # (d,) tied: subtracted before the encoder, added after the decoder


class PaperTrain(NamedTuple):
    sae: PaperSAE  # rows normalised, as the authors' forward sees them
    loss: np.ndarray  # (epochs,)


def init_sae(key: jax.Array, d: int, latents: int = LATENTS) -> PaperSAE:
    """Normal weights scaled to unit rows, encoder bias U(-1/sqrt(d), 1/sqrt(d)), pre-bias zero."""
    k1, k2, k3 = jax.random.split(key, 3)
    bound = 1.0 / np.sqrt(d)
    return PaperSAE(
        unit_rows(jax.random.normal(k1, (latents, d))),
        jax.random.uniform(k2, (latents,), minval=-bound, maxval=bound),
        unit_rows(jax.random.normal(k3, (d, latents))),
        jnp.zeros(d),
    )


def unit_rows(w: jax.Array) -> jax.Array:
    """Rows scaled to unit L2 norm (torch's F.normalize along the last axis, eps 1e-12)."""
    return w / jnp.maximum(jnp.linalg.norm(w, axis=-1, keepdims=True), 1e-12)


def encode(sae: PaperSAE, x: jax.Array) -> jax.Array:
    """(n, d) -> (n, latents): ReLU((x - b_pre) W_enc^T + b_enc)."""
    return jax.nn.relu((x - sae.b_pre) @ sae.W_enc.T + sae.b_enc)


def loss_fn(sae: PaperSAE, x: jax.Array, l1: float) -> jax.Array:
    """mean over elements of (x_hat - x)^2 + l1 * mean over vectors of ||f||_1."""
    f = encode(sae, x)
    x_hat = f @ sae.W_dec.T + sae.b_pre
    return jnp.mean(jnp.square(x_hat - x)) + l1 * jnp.mean(jnp.sum(jnp.abs(f), axis=-1))


def constrained_grads(sae: PaperSAE, x: jax.Array, l1: float) -> tuple[jax.Array, PaperSAE]:
    """Loss and gradients at `sae` with its rows renormalised, the parallel part removed from the weight
    gradients (the authors' forward renormalisation and backward hook). -> (loss, grads)"""
    sae = sae._replace(W_enc=unit_rows(sae.W_enc), W_dec=unit_rows(sae.W_dec))
    loss, g = jax.value_and_grad(loss_fn)(sae, x, l1)
    g = g._replace(W_enc=_orthogonal(g.W_enc, sae.W_enc), W_dec=_orthogonal(g.W_dec, sae.W_dec))
    return loss, g


def train_sae(
    x: np.ndarray, l1: float, *, latents: int = LATENTS, epochs: int = EPOCHS, lr: float = LR, seed: int = 0
) -> PaperTrain:
    """Full-batch Adam on x: (n, d), raw head vectors."""
    if x.ndim != 2:
        raise ValueError(f"x must be (n, d), got shape {x.shape}")
    x = jnp.asarray(x, jnp.float32)
    sae, loss = _fit(init_sae(jax.random.PRNGKey(seed), x.shape[1], latents), x, l1, lr, epochs)
    return PaperTrain(sae._replace(W_enc=unit_rows(sae.W_enc), W_dec=unit_rows(sae.W_dec)), np.asarray(loss))


def codes(sae: PaperSAE, x: np.ndarray) -> np.ndarray:
    """The most active latent of each vector (argmax, ties to the lowest index). (n, d) -> (n,) int."""
    return np.asarray(jnp.argmax(encode(sae, jnp.asarray(x, jnp.float32)), axis=-1))


def edge_node_counts(edges: np.ndarray) -> np.ndarray:
    """The authors' node score from edges: the top n^2/4 ordered head pairs by code-pair count (self pairs
    excluded, ties broken towards the later flat index as `argsort(...)[::-1]` does for distinct keys), each
    pair adding one to both its heads. edges: (n, n) -> (n,) counts (softmax them for the paper's ranking)."""
    n = len(edges)
    e = np.asarray(edges, float).copy()
    np.fill_diagonal(e, 0)
    order = np.argsort(e.ravel(), kind="stable")[::-1][: n * n // 4]
    i, j = np.unravel_index(order, e.shape)
    return np.bincount(i, minlength=n) + np.bincount(j, minlength=n)


def _orthogonal(g: jax.Array, w: jax.Array) -> jax.Array:
    """g minus its projection on each (unit) row of w."""
    return g - jnp.sum(g * w, axis=-1, keepdims=True) * w


@functools.partial(jax.jit, static_argnames=("epochs",))
def _fit(sae: PaperSAE, x: jax.Array, l1: float, lr: float, epochs: int) -> tuple[PaperSAE, jax.Array]:
    opt = optax.adam(lr)

    def step(carry, _):
        sae, state = carry
        sae = sae._replace(W_enc=unit_rows(sae.W_enc), W_dec=unit_rows(sae.W_dec))
        loss, g = constrained_grads(sae, x, l1)
        updates, state = opt.update(g, state, sae)
        return (optax.apply_updates(sae, updates), state), loss

    (sae, _), losses = jax.lax.scan(step, (sae, opt.init(sae)), None, length=epochs)
    return sae, losses


def paper_codes(
    model: Model, task: TaskData, l1: float, seed: int = 0, train_vectors: int = TRAIN_VECTORS
) -> CodesResult:
    """The whole recipe on `task` (250 pairs in the paper): raw all-position head vectors of every positive
    and negative prompt, an SAE trained on `train_vectors` prompts drawn at random from both together, every
    prompt coded, node and edge scores over all of them. `node` holds u_h, `edge_node` the top-pairs counts."""
    t0 = time.perf_counter()
    pos, neg = head_vectors(model, task, "all")
    t1 = time.perf_counter()
    n, h, d = pos.shape
    x = np.concatenate([pos, neg])  # (2n, heads, d), positives first as in the authors' data
    if not 0 < train_vectors <= 2 * n:
        raise ValueError(f"train_vectors must be in 1..{2 * n} (the prompts counted), got {train_vectors}")
    pick = np.random.default_rng(seed).permutation(2 * n)[:train_vectors]
    fit = train_sae(x[pick].reshape(-1, d), l1, seed=seed)
    t2 = time.perf_counter()
    c = codes(fit.sae, x.reshape(-1, d)).reshape(2 * n, h)
    return CodesResult(
        *code_scores(c, n, model.cfg, edge_node_counts),
        _summary(fit, x[pick].reshape(-1, d)),
        time.perf_counter() - t0,
        t1 - t0,
        t2 - t1,
    )


def _summary(fit: PaperTrain, x: np.ndarray) -> TrainResult:
    xj = jnp.asarray(x, jnp.float32)
    f = encode(fit.sae, xj)
    x_hat = f @ fit.sae.W_dec.T + fit.sae.b_pre
    mse = float(jnp.sum(jnp.square(x_hat - xj)) / jnp.maximum(jnp.sum(jnp.square(xj - xj.mean(0))), 1e-30))
    on = np.asarray(f > 0)
    return TrainResult(fit.sae, fit.loss, mse, float(on.sum(-1).mean()), int(on.any(0).sum()))
