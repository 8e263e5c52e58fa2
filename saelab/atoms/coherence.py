"""Mutual coherence of a dictionary under the AIP metric (Hu et al., arXiv 2509.20784; docs/methods.md, "Atoms").

`mu = max_{i != j} |<d_i, d_j>_S|` and per atom `mu_i = max_{j != i} |<d_i, d_j>_S|`, with `<., .>_S` the
normalised atomic inner product. Computed blocked on the device: a jitted function of static shape takes a
`block`-row slice of the whitened, unit-normalised dictionary and scans its columns in `col_block` chunks, so
no more than `block x col_block` inner products exist at once and the m x m Gram matrix is never built.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from saelab.whitening import HIGHEST, Metric, normalise, whiten

Precision = Literal["float32", "bfloat16"]


class Coherence(NamedTuple):
    """Coherence of a dictionary D (m, d) in the metric it was computed in."""

    mu: float  # max_{i != j} |<d_i, d_j>_S|
    per_atom: jax.Array  # (m,) mu_i = max_{j != i} |<d_i, d_j>_S|
    nearest: jax.Array  # (m,) int32, the j attaining mu_i (nearest neighbour in |AIP|)
    nearest_aip: jax.Array  # (m,) signed <d_i, d_nearest>_S

    def summary(self) -> dict[str, tuple[float, str]]:
        """name -> (value, definition)."""
        return {
            "mu": (self.mu, "max_{i != j} |<d_i, d_j>_S| (normalised AIP)"),
            "mean_mu_i": (
                float(self.per_atom.mean()),
                "mean over atoms of mu_i = max_{j != i} |<d_i, d_j>_S|",
            ),
            "median_mu_i": (float(jnp.median(self.per_atom)), "median over atoms of mu_i"),
        }


def coherence(
    D: jax.Array,
    metric: Metric | None = None,
    *,
    block: int = 2048,
    col_block: int = 8192,
    precision: Precision = "float32",
) -> Coherence:
    """Global and per-atom coherence of the rows of D (m, d); metric=None is the Euclidean cosine.

    precision="bfloat16" rounds the normalised atoms to bfloat16 and accumulates in float32 (AIPs off by up to
    ~1e-2); "float32" asks for full float32 matmuls (no TF32 on GPUs). Zero atoms have AIP 0 with everything.
    """
    if D.ndim != 2 or D.shape[0] < 2:
        raise ValueError(f"dictionary must be (m >= 2, d), got {D.shape}")
    m, d = D.shape
    Dn = normalise(whiten(D, metric))  # (m, d)
    block, col_block = min(block, m), min(col_block, m)
    dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
    cols = _pad_rows(Dn.astype(dtype), col_block).reshape(-1, col_block, d)  # (n_chunks, col_block, d)
    flat = cols.reshape(-1, d)  # (m_pad, d), padded to a multiple of col_block only
    out = [_block_nearest(_pad_rows(flat[s : s + block], block), jnp.int32(s), cols, m) for s in range(0, m, block)]
    best = jnp.concatenate([o[0] for o in out])[:m]
    arg = jnp.concatenate([o[1] for o in out])[:m]
    per_atom = jnp.abs(best)
    return Coherence(mu=float(per_atom.max()), per_atom=per_atom, nearest=arg, nearest_aip=best)


def _pad_rows(X: jax.Array, multiple: int) -> jax.Array:
    pad = -X.shape[0] % multiple
    return jnp.pad(X, ((0, pad), (0, 0))) if pad else X


@partial(jax.jit, static_argnums=(3,))
def _block_nearest(rows: jax.Array, start: jax.Array, cols: jax.Array, m: int) -> tuple[jax.Array, jax.Array]:
    """For rows (b, d) with global ids start..start+b: the signed AIP of largest magnitude with any other
    real atom among cols (n_chunks, cb, d), and its index."""
    b, cb = rows.shape[0], cols.shape[1]
    row_ids = start + jnp.arange(b, dtype=jnp.int32)  # (b,)

    def step(carry, chunk):
        best_abs, best, arg, c0 = carry
        g = jnp.matmul(rows, chunk.T, precision=HIGHEST, preferred_element_type=jnp.float32)  # (b, cb)
        col_ids = c0 + jnp.arange(cb, dtype=jnp.int32)  # (cb,)
        # -1 keeps the atom itself and padding columns from ever being a neighbour.
        ok = (col_ids[None, :] != row_ids[:, None]) & (col_ids[None, :] < m)
        a = jnp.where(ok, jnp.abs(g), -1.0)
        j = jnp.argmax(a, axis=1)  # (b,)
        aj = jnp.take_along_axis(a, j[:, None], 1)[:, 0]
        gj = jnp.take_along_axis(g, j[:, None], 1)[:, 0]
        better = aj > best_abs
        carry = (
            jnp.where(better, aj, best_abs),
            jnp.where(better, gj, best),
            jnp.where(better, col_ids[j], arg),
            c0 + cb,
        )
        return carry, None

    init = (jnp.full((b,), -1.0), jnp.zeros((b,)), jnp.full((b,), -1, jnp.int32), jnp.int32(0))
    (_, best, arg, _), _ = jax.lax.scan(step, init, cols)
    return best, arg
