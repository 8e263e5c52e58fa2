"""The atomic inner product (AIP) of Hu et al. (arXiv 2509.20784, docs/methods.md, "Atoms").

Representations are defined only up to an invertible linear map h -> A h, so angles are measured in the metric
`S = (E[h h^T])^-1` (or the inverse covariance with `centred=True`), estimated from activations:
`<u, v>_S = u^T S v / (||u||_S ||v||_S)`. With the symmetric whitening matrix `W = S^(1/2)` this is the plain
cosine of `W u` and `W v`. Under h -> A h and u -> A u, S becomes A^-T S A^-1 and the AIP is unchanged.

The metric's estimate and the whitening themselves live below atoms and inspect, in `saelab.whitening`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from saelab.store import ActivationStore
from saelab.whitening import HIGHEST, Metric, estimate_metric, moments_of, normalise, whiten


def metric_from_store(
    store: ActivationStore,
    hook: str,
    *,
    tokens: int | None = None,
    min_position: int = 0,
    centred: bool = False,
    max_cond: float = 1e6,
    batch: int = 8192,
) -> Metric:
    """The metric of a store's activations at `hook`: its first `tokens` tokens at window positions
    >= min_position (all of them with tokens=None), streamed in row batches (the separate sample of the paper)."""
    idx = np.flatnonzero(np.asarray(store.pos) >= min_position)[:tokens]
    if len(idx) < 2:
        raise ValueError(f"store {store.path} has {len(idx)} tokens at positions >= {min_position}; need >= 2")
    view = store.activations(hook)
    batches = (view.take(idx[i : i + batch], np.float32) for i in range(0, len(idx), batch))
    return estimate_metric(moments_of(batches), centred=centred, max_cond=max_cond)


def aip(U: jax.Array, V: jax.Array, metric: Metric | None) -> jax.Array:
    """(len(U), len(V)) matrix of <u, v>_S / (||u||_S ||v||_S); with metric=None the Euclidean cosine.

    Zero vectors get AIP 0 with everything.
    """
    return _cosines(whiten(U, metric), whiten(V, metric))


def cosine(U: jax.Array, V: jax.Array) -> jax.Array:
    """(len(U), len(V)) Euclidean cosines, the baseline the AIP is compared with."""
    return aip(U, V, None)


def pair_angles(D: jax.Array, metric: Metric | None, n_pairs: int = 100_000, seed: int = 0) -> jax.Array:
    """(n_pairs,) angles in degrees between random distinct atom pairs (i != j), for the AIP vs Euclidean
    histograms of docs/methods.md, "Atoms" (unrelated directions centre on 90 degrees under AIP)."""
    m = D.shape[0]
    if m < 2:
        raise ValueError("need at least two atoms")
    ki, kj = jax.random.split(jax.random.PRNGKey(seed))
    i = jax.random.randint(ki, (n_pairs,), 0, m)
    j = (i + jax.random.randint(kj, (n_pairs,), 1, m)) % m
    Dw = normalise(whiten(D, metric))  # (m, d)
    c = jnp.sum(Dw[i] * Dw[j], -1)
    return jnp.degrees(jnp.arccos(jnp.clip(c, -1.0, 1.0)))


@jax.jit
def _cosines(U: jax.Array, V: jax.Array) -> jax.Array:
    return jnp.matmul(normalise(U), normalise(V).T, precision=HIGHEST)
