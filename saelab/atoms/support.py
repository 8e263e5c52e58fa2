"""Support-restricted per-sample coherence: the alternative reading of "the coherence restricted to the atoms
involved" (docs/methods.md, "Atoms").

The documented default (uniqueness.py) compares every active atom with ALL atoms: `max_{i in supp z} mu_i`,
which is what the Donoho-Elad argument needs (a competing code may use any atom). The alternative compares the
active atoms only with each other: `mu_supp(z) = max_{i != j in supp z} |<d_i, d_j>_S|`. It is never larger,
but `mu_supp < 1/(2K - 1)` does not by itself guarantee uniqueness; it only says the active atoms are
well separated. Exposed as `sample_coherence="support"` so the two readings can be compared.

Cost: a (K x K) Gram matrix per sample, b K^2 d flops a block. Samples with more than `max_k` active atoms fall
back to the default `max_{i in supp z} mu_i` (an upper bound of mu_supp), so they are never counted unique
more easily than under the default.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from saelab.whitening import HIGHEST


@partial(jax.jit, static_argnames=("max_k",))
def support_coherence(Dn: jax.Array, Z: jax.Array, per_atom: jax.Array, max_k: int = 64) -> jax.Array:
    """(b,) max_{i != j in supp z} |<d_i, d_j>| of dense codes Z (b, m) over unit (whitened) atoms Dn (m, d);
    0 for codes with fewer than two active atoms; `max_{i in supp z} per_atom[i]` where ||z||_0 > max_k."""
    active = Z != 0  # (b, m)
    l0 = active.sum(1)  # (b,)
    k = min(max_k, Z.shape[1])
    mag, idx = jax.lax.top_k(jnp.abs(Z), k)  # (b, k): every active atom when l0 <= k
    on = mag > 0  # (b, k)
    sub = Dn[idx]  # (b, k, d)
    g = jnp.abs(jnp.einsum("bkd,bjd->bkj", sub, sub, precision=HIGHEST))  # (b, k, k)
    pair = on[:, :, None] & on[:, None, :] & ~jnp.eye(k, dtype=bool)[None]
    mu_supp = jnp.max(jnp.where(pair, g, 0.0), axis=(1, 2))
    mu_all = jnp.max(jnp.where(active, per_atom[None, :], 0.0), axis=1)
    return jnp.where(l0 > k, mu_all, mu_supp)
