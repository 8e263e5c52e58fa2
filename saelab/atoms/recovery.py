"""l1 recovery of codes over a (whitened) dictionary with batched FISTA (docs/methods.md, "Atoms").

Solves the LASSO / basis-pursuit-denoising problem `min_z 0.5 ||x - z D||^2 + lam ||z||_1` (optionally z >= 0)
for a batch of rows x at once with FISTA (Beck & Teboulle 2009): a fixed number of iterations under
`lax.fori_loop`, step 1/L, L = the largest eigenvalue of D D^T from power iteration. The recovered supports
are compared with given codes (an SAE's) by support precision and recall, and the reconstructions by R^2.

Cost: each iteration is two (b, m) x (m, d) matmuls, about 4 b m d flops, so wide dictionaries, many samples
and many iterations multiply up; hence the analysis recovers a sample of rows (`recovery_samples`).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from saelab.atoms.codes import Codes, check, rows, to_dense
from saelab.atoms.reconstruction import Reconstruction, add_batch, finish
from saelab.whitening import HIGHEST, Metric, normalise, whiten


class Recovery(NamedTuple):
    """LASSO recovery against reference codes; counts are summed over all samples (micro-averaged)."""

    precision: float  # |supp z_hat & supp z| / |supp z_hat|
    recall: float  # |supp z_hat & supp z| / |supp z|
    exact_support: float  # fraction of samples with supp z_hat == supp z
    l0_recovered: float  # mean |supp z_hat|
    l0_reference: float  # mean |supp z|
    recon: Reconstruction  # R^2 / NMSE of z_hat D against x, in the (whitened) space the LASSO solved in
    lam: float  # the l1 weight (relative to ||x D^T||_inf per sample if `relative`)
    relative: bool
    lipschitz: float  # L, the step is 1/L
    n_iter: int

    def summary(self) -> dict[str, tuple[float, str]]:
        """name -> (value, definition)."""
        lam = f"lam = {self.lam:g}" + (" x ||x D^T||_inf" if self.relative else "")
        return {
            "support_precision": (self.precision, f"|supp z_lasso & supp z_ref| / |supp z_lasso|, {lam}"),
            "support_recall": (self.recall, "|supp z_lasso & supp z_ref| / |supp z_ref|"),
            "exact_support": (self.exact_support, "fraction of samples with supp z_lasso == supp z_ref"),
            "l0_lasso": (self.l0_recovered, "mean |supp z_lasso|"),
            "l0_reference": (self.l0_reference, "mean |supp z_ref|"),
            "r2_lasso": (
                self.recon.r2,
                "1 - SSE/SST of z_lasso D against x (whitened x, D if a metric was given)",
            ),
        }


def lipschitz(D: jax.Array, n_iter: int = 200, seed: int = 0) -> float:
    """Largest eigenvalue of D D^T (= of D^T D) by power iteration on the (d, d) side.

    Power iteration approaches it from below; the result is enlarged by 0.1% so 1/L stays a safe step.
    """
    v = jax.random.normal(jax.random.PRNGKey(seed), (D.shape[1],))
    return 1.001 * float(_power(jnp.asarray(D, jnp.float32), v, n_iter))


def lambda_max(X: jax.Array, D: jax.Array) -> jax.Array:
    """(n,) ||x D^T||_inf, the smallest l1 weight for which the LASSO solution is z = 0."""
    return jnp.max(jnp.abs(jnp.matmul(X, D.T, precision=HIGHEST)), axis=1)


@partial(jax.jit, static_argnames=("n_iter", "nonneg"))
def fista(
    X: jax.Array, D: jax.Array, lam: jax.Array | float, L: float, *, n_iter: int = 200, nonneg: bool = False
) -> jax.Array:
    """(b, m) approximate argmin_z 0.5 ||x - z D||^2 + lam ||z||_1 for each row x of X (b, d), D (m, d).

    lam is a scalar or a (b,) per-sample weight.
    """
    XDt = jnp.matmul(X, D.T, precision=HIGHEST)  # (b, m)
    thresh = jnp.broadcast_to(jnp.asarray(lam, jnp.float32).reshape(-1, 1), (X.shape[0], 1)) / L  # (b, 1)

    def prox(v):
        if nonneg:
            return jnp.maximum(v - thresh, 0.0)
        return jnp.sign(v) * jnp.maximum(jnp.abs(v) - thresh, 0.0)

    def body(_, state):
        z, y, t = state
        grad = jnp.matmul(jnp.matmul(y, D, precision=HIGHEST), D.T, precision=HIGHEST) - XDt  # (b, m)
        z_new = prox(y - grad / L)
        t_new = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        return z_new, z_new + ((t - 1) / t_new) * (z_new - z), t_new

    z0 = jnp.zeros_like(XDt)
    return jax.lax.fori_loop(0, n_iter, body, (z0, z0, jnp.float32(1.0)))[0]


def recover(
    X: jax.Array,
    D: jax.Array,
    codes: Codes,
    *,
    metric: Metric | None = None,
    lam: float = 0.05,
    relative: bool = True,
    n_iter: int = 200,
    nonneg: bool = False,
    block: int = 1024,
    support_tol: float = 1e-6,
) -> Recovery:
    """LASSO-recover codes of activations X (n, d) over the rows of D (m, d), both whitened by `metric` and
    the atoms unit-normalised; compare supports (|z_hat| > support_tol) with the reference `codes` (n, m).

    With `relative`, each sample's l1 weight is lam * ||x D^T||_inf (lam in (0, 1), scale-free). Activations
    are used as given: subtract a mean or decoder bias first if the codes were fitted to x - b.
    """
    m = D.shape[0]
    check(codes, m, X.shape[0])
    Dn = normalise(whiten(D, metric))  # (m, d)
    L = lipschitz(Dn)
    block = min(block, X.shape[0])
    totals = [0, 0, 0, 0]  # true positives, predicted, reference, exact-support samples
    sums = None
    for s in range(0, X.shape[0], block):
        e = min(s + block, X.shape[0])
        Xw = whiten(X[s:e], metric)  # (b, d)
        w = lam * lambda_max(Xw, Dn) if relative else lam
        # padding the last block to `block` rows keeps a single compiled FISTA loop
        Xp = jnp.pad(Xw, ((0, block - (e - s)), (0, 0)))
        wp = jnp.pad(w, (0, block - (e - s))) if relative else w
        Z = fista(Xp, Dn, wp, L, n_iter=n_iter, nonneg=nonneg)[: e - s]  # (b, m)
        counts = _support_counts(Z, to_dense(rows(codes, s, e), m), support_tol)
        totals = [a + int(b) for a, b in zip(totals, counts, strict=True)]
        sums = add_batch(sums, Xw, jnp.matmul(Z, Dn, precision=HIGHEST))
    if sums is None:
        raise ValueError("no samples")
    n = X.shape[0]
    tp, n_pred, n_true, exact = totals
    return Recovery(
        precision=tp / n_pred if n_pred else float("nan"),
        recall=tp / n_true if n_true else float("nan"),
        exact_support=exact / n,
        l0_recovered=n_pred / n,
        l0_reference=n_true / n,
        recon=finish(sums),
        lam=lam,
        relative=relative,
        lipschitz=L,
        n_iter=n_iter,
    )


@jax.jit
def _support_counts(Z: jax.Array, Z_ref: jax.Array, tol: float) -> tuple[jax.Array, ...]:
    pred, true = jnp.abs(Z) > tol, Z_ref != 0  # (b, m)
    return (
        (pred & true).sum(),
        pred.sum(),
        true.sum(),
        jnp.all(pred == true, axis=1).sum(),
    )


@partial(jax.jit, static_argnums=(2,))
def _power(D: jax.Array, v: jax.Array, n_iter: int) -> jax.Array:
    def body(_, v):
        w = jnp.matmul(jnp.matmul(D, v, precision=HIGHEST), D, precision=HIGHEST)  # (d,) D^T D v
        return w / jnp.linalg.norm(w)

    v = jax.lax.fori_loop(0, n_iter, body, v / jnp.linalg.norm(v))
    return jnp.linalg.norm(jnp.matmul(D, v, precision=HIGHEST)) ** 2
