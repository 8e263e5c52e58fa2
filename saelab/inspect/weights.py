"""Dashboard data from the weights alone: what each decoder direction writes to the logits, and its nearest
latents by decoder cosine and by the atomic inner product (AIP, saelab.atoms)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models import Model
from saelab.models.transformer import unembed
from saelab.models.weights import ModelWeights


class Ranked(NamedTuple):
    """Top entries per row, best first."""

    index: np.ndarray  # (n, k) int32 token ids or latent indices
    value: np.ndarray  # (n, k) float32 logits or similarities


class LogitLens(NamedTuple):
    positive: Ranked  # (n, k) largest logits of each direction
    negative: Ranked  # (n, k) smallest, most negative first


def logit_lens(model: Model, directions: np.ndarray, k: int = 10, chunk: int = 128) -> LogitLens:
    """Top +/- logits of each direction (n, d_model) through the model's own final norm and unembedding.

    Norms rescale a direction by a positive factor (RMSNorm) or also centre it and add a bias (LayerNorm);
    running the family's `unembed` applies exactly what the model applies to its last residual stream.
    The (n, vocab) logits are never built whole: `chunk` directions at a time.
    """
    k = min(k, model.cfg.vocab_size)

    @jax.jit
    def run(params: ModelWeights, directions: jax.Array) -> tuple[jax.Array, ...]:
        def one(d: jax.Array) -> tuple[jax.Array, ...]:  # (d_model,)
            logits = unembed(params, model.cfg, d[None, None].astype(model.dtype))[0, 0]  # (vocab,)
            top, top_i = jax.lax.top_k(logits.astype(jnp.float32), k)
            bot, bot_i = jax.lax.top_k(-logits.astype(jnp.float32), k)
            return top_i, top, bot_i, -bot

        return jax.lax.map(one, directions, batch_size=chunk)

    ti, tv, bi, bv = (np.asarray(a) for a in run(model.params, jnp.asarray(directions, jnp.float32)))
    return LogitLens(Ranked(ti.astype(np.int32), tv), Ranked(bi.astype(np.int32), bv))


def nearest(rows: np.ndarray, dictionary: np.ndarray, k: int = 8, metric=None, chunk: int = 512) -> Ranked:
    """For each index in `rows` (n,), the k dictionary rows (m, d) most similar to that row, itself excluded.

    Similarity is the cosine, or the AIP under `metric` (a saelab.atoms.Metric: cosine after whitening).
    """
    from saelab.whitening import whiten

    D = whiten(jnp.asarray(dictionary, jnp.float32), metric)  # (m, d)
    D = D / jnp.maximum(jnp.linalg.norm(D, axis=1, keepdims=True), 1e-12)
    k = min(k, D.shape[0] - 1)

    @jax.jit
    def run(D: jax.Array, rows: jax.Array) -> tuple[jax.Array, jax.Array]:
        def one(i: jax.Array) -> tuple[jax.Array, jax.Array]:  # () latent index
            sims = (D @ D[i]).at[i].set(-jnp.inf)  # (m,), never itself
            v, j = jax.lax.top_k(sims, k)
            return j, v

        return jax.lax.map(one, rows, batch_size=chunk)  # vmapped blocks: (chunk, m) similarities at a time

    j, v = run(D, jnp.asarray(rows, jnp.int32))
    return Ranked(np.asarray(j, np.int32), np.asarray(v, np.float32))
