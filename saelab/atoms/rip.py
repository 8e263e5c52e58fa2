"""Sampled restricted isometry constant delta_K (docs/methods.md, "Atoms").

delta_K is the smallest delta with (1 - delta)||z||^2 <= ||z D_T||^2 <= (1 + delta)||z||^2 for every K-subset
T of the unit-normalised (whitened) atoms: delta_K = max_T max(1 - s_min(D_T)^2, s_max(D_T)^2 - 1). The exact
maximum is over all C(m, K) subsets; we sample `n_subsets` uniform random K-subsets and take the extreme
eigenvalues of each K x K Gram matrix (eigvalsh, batched), so the estimate is a lower bound on delta_K that
tightens with more samples.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from saelab.whitening import HIGHEST, Metric, normalise, whiten


class RIP(NamedTuple):
    """Sampled RIP constant of order k."""

    k: int
    delta: float  # max over sampled subsets of max(1 - s_min^2, s_max^2 - 1): a lower bound on delta_K
    s2_min: float  # smallest squared singular value seen
    s2_max: float  # largest squared singular value seen
    per_subset: jax.Array  # (n_subsets,) max(1 - s_min^2, s_max^2 - 1) of each sampled subset
    subsets: jax.Array  # (n_subsets, k) the sampled atom indices

    def summary(self) -> dict[str, tuple[float, str]]:
        """name -> (value, definition)."""
        n = self.per_subset.shape[0]
        return {
            f"delta_{self.k}": (
                self.delta,
                f"max over {n} random {self.k}-subsets of max(1 - s_min^2, s_max^2 - 1)",
            ),
            f"median_delta_{self.k}": (float(jnp.median(self.per_subset)), "median of the same over subsets"),
        }


def rip_constant(
    D: jax.Array,
    k: int,
    metric: Metric | None = None,
    *,
    n_subsets: int = 10_000,
    seed: int = 0,
    batch: int = 1024,
) -> RIP:
    """Sampled delta_k of the rows of D (m, d), whitened by `metric` and unit-normalised."""
    m = D.shape[0]
    if not 1 <= k <= m:
        raise ValueError(f"need 1 <= k <= m = {m}, got k={k}")
    Dn = normalise(whiten(D, metric))  # (m, d)
    keys = jax.random.split(jax.random.PRNGKey(seed), -(-n_subsets // batch))
    out = [_subset_batch(Dn, key, k, batch) for key in keys]
    lo = jnp.concatenate([o[0] for o in out])[:n_subsets]
    hi = jnp.concatenate([o[1] for o in out])[:n_subsets]
    idx = jnp.concatenate([o[2] for o in out])[:n_subsets]
    per = jnp.maximum(1 - lo, hi - 1)
    return RIP(k, float(per.max()), float(lo.min()), float(hi.max()), per, idx)


@partial(jax.jit, static_argnums=(2, 3))
def _subset_batch(Dn: jax.Array, key: jax.Array, k: int, batch: int) -> tuple[jax.Array, ...]:
    # top-k of iid uniforms is a uniform random k-subset, without replacement.
    idx = jax.lax.top_k(jax.random.uniform(key, (batch, Dn.shape[0])), k)[1]  # (batch, k)
    sub = Dn[idx]  # (batch, k, d)
    gram = jnp.einsum("bkd,bjd->bkj", sub, sub, precision=HIGHEST)  # (batch, k, k)
    ev = jnp.linalg.eigvalsh(gram)  # (batch, k) ascending
    return ev[:, 0], ev[:, -1], idx
