"""Scoring an SAE against a world's true features, with SAELens's definitions
(`sae_lens.synthetic.evals.eval_sae_on_synthetic_data`; arXiv 2602.14687 sec. 4):

- C_ij = |cos(W_dec[i], f_j)| (norms clamped at 1e-8).
- MCC (arXiv 2505.20254): the one-to-one matching maximising sum C (scipy's `linear_sum_assignment` on 1 - C),
  mean C over the min(L, N) matched pairs. Decoder only.
- Detector metrics match each latent to `m(i) = argmax_j C_ij`; latent i fired = `z_i != 0`, truth =
  `a_m(i) > 0`; per latent P = TP/(TP+FP), R = TP/(TP+FN), F1 = 2PR/(P+R), accuracy (TP+TN)/n, 0 where undefined;
  means over all L latents (dead ones count 0).
- Uniqueness |{m(i)}| / L; L0 of the SAE and of the truth; dead latents (never fired); shrinkage mean
  |x_hat|/|x| over samples with |x| > 1e-6; explained variance 1 - E|x - x_hat|^2 / (E|x|^2 - |E x|^2).

Per batch one jitted function returns sums; the host adds them in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from saelab.sae import LoadedSAE
from saelab.synth.sample import batches
from saelab.synth.world import World

MIN_INPUT_NORM = 1e-6  # SAELens's ShrinkageCalculator default


class SynthScores(NamedTuple):
    """One SAE's scores on one world (field meanings in the module docstring)."""

    f1: float
    mcc: float
    precision: float
    recall: float
    accuracy: float
    uniqueness: float
    explained_variance: float
    sae_l0: float
    true_l0: float
    dead_latents: int
    shrinkage: float
    n_latents: int
    n_samples: int

    @property
    def dead_fraction(self) -> float:
        return self.dead_latents / self.n_latents


class _Sums(NamedTuple):
    true_nnz: jax.Array  # ()
    sae_nnz: jax.Array  # ()
    fired: jax.Array  # (L,) bool
    tp: jax.Array  # (L,)
    fp: jax.Array
    fn: jax.Array
    tn: jax.Array
    shrink: jax.Array  # () sum of |x_hat| / |x|
    shrink_n: jax.Array  # ()
    sum_x: jax.Array  # (d,)
    sum_sq: jax.Array  # ()
    sum_res: jax.Array  # ()


def score(sae: LoadedSAE, world: World, n_samples: int = 100_000, batch: int = 4096, seed: int = 1) -> SynthScores:
    """Score a loaded SAE on `n_samples` fresh samples of `world` (stream `seed`; trainers' stores use others)."""
    return score_all({"sae": sae}, world, n_samples, batch, seed)["sae"]


def score_all(
    saes: dict[str, LoadedSAE], world: World, n_samples: int = 100_000, batch: int = 4096, seed: int = 1
) -> dict[str, SynthScores]:
    """Score several SAEs on the same `n_samples` fresh samples of `world`, drawn once (stream `seed`)."""
    for name, sae in saes.items():
        if sae.cfg.d_in != world.hidden_dim:
            raise ValueError(f"{name} reads d_in={sae.cfg.d_in}, the world has hidden_dim={world.hidden_dim}")
    scorers = {
        name: Scorer(sae.encode, lambda z, x, s=sae: s.decode(z, x), sae.W_dec, world.features)
        for name, sae in saes.items()
    }
    stream = batches(world, batch, seed)
    for start in range(0, n_samples, batch):
        m = min(batch, n_samples - start)
        s = next(stream)
        for sc in scorers.values():
            sc.add(s.hidden[:m], s.features[:m])
    return {name: sc.result() for name, sc in scorers.items()}


def score_samples(
    encode: Callable[[jax.Array], jax.Array],
    decode: Callable[[jax.Array, jax.Array], jax.Array],
    W_dec: jax.Array,
    features: jax.Array,
    samples: Iterable[tuple[jax.Array, jax.Array]],
) -> SynthScores:
    """Scores of the SAE `encode` / `decode(codes, x)` with decoder rows `W_dec` (L, d) against true
    `features` (N, d), over `samples`: (hidden (b, d), true activations (b, N)) pairs."""
    sc = Scorer(encode, decode, W_dec, features)
    for x, a in samples:
        sc.add(x, a)
    return sc.result()


class Scorer:
    """Streaming scores of one SAE: `add` batches of (hidden, true activations), then `result`."""

    def __init__(self, encode, decode, W_dec: jax.Array, features: jax.Array) -> None:
        self.cos = jnp.abs(cosines(jnp.asarray(W_dec, jnp.float32), jnp.asarray(features, jnp.float32)))  # (L, N)
        self.match = jnp.argmax(self.cos, axis=1)  # (L,)
        self._step = jax.jit(lambda x, a, match: _batch_sums(encode, decode, match, x, a))
        self.total: _Sums | None = None
        self.n = 0

    def add(self, x: jax.Array, a: jax.Array) -> None:
        part = self._step(jnp.asarray(x), jnp.asarray(a), self.match)
        part = jax.tree.map(lambda v: np.asarray(v, np.float64), part)
        self.total = part if self.total is None else jax.tree.map(np.add, self.total, part)
        self.n += x.shape[0]

    def result(self) -> SynthScores:
        total, n = self.total, self.n
        if total is None:
            raise ValueError("no samples to score on")
        L = self.cos.shape[0]
        p = _ratio(total.tp, total.tp + total.fp)
        r = _ratio(total.tp, total.tp + total.fn)
        f1 = _ratio(2 * p * r, p + r)
        acc = (total.tp + total.tn) / np.maximum(total.tp + total.fp + total.fn + total.tn, 1e-8)
        var = total.sum_sq / n - np.sum((total.sum_x / n) ** 2)
        mse = total.sum_res / n
        ev = (1.0 if mse < 1e-10 else 0.0) if var < 1e-10 else 1.0 - mse / var
        return SynthScores(
            f1=float(f1.mean()),
            mcc=mcc(np.asarray(self.cos)),
            precision=float(p.mean()),
            recall=float(r.mean()),
            accuracy=float(acc.mean()),
            uniqueness=len(np.unique(np.asarray(self.match))) / L,
            explained_variance=float(ev),
            sae_l0=float(total.sae_nnz / n),
            true_l0=float(total.true_nnz / n),
            dead_latents=int(L - np.count_nonzero(total.fired)),
            shrinkage=float(total.shrink / total.shrink_n) if total.shrink_n else 0.0,
            n_latents=L,
            n_samples=n,
        )


def cosines(U: jax.Array, V: jax.Array) -> jax.Array:
    """(m, n) cosine of each row of U with each row of V, norms clamped at 1e-8 (SAELens's
    `cosine_similarities`)."""
    un = U / jnp.maximum(jnp.linalg.norm(U, axis=1, keepdims=True), 1e-8)
    vn = V / jnp.maximum(jnp.linalg.norm(V, axis=1, keepdims=True), 1e-8)
    return jnp.matmul(un, vn.T, precision=jax.lax.Precision.HIGHEST)


def mcc(abs_cos: np.ndarray) -> float:
    """Mean |cos| over the one-to-one matching of rows to columns that maximises its sum."""
    rows, cols = linear_sum_assignment(1.0 - abs_cos)
    return float(abs_cos[rows, cols].astype(np.float64).mean())


def _batch_sums(encode, decode, match: jax.Array, x: jax.Array, a: jax.Array) -> _Sums:
    x = x.astype(jnp.float32)  # (b, d)
    z = encode(x)  # (b, L)
    x_hat = decode(z, x)  # (b, d)
    on = z != 0
    truth = a[:, match] > 0  # (b, L)
    count = lambda m: jnp.sum(m, axis=0, dtype=jnp.int32)
    norm_x, norm_hat = jnp.linalg.norm(x, axis=-1), jnp.linalg.norm(x_hat, axis=-1)
    valid = norm_x > MIN_INPUT_NORM
    return _Sums(
        true_nnz=jnp.sum(a != 0, dtype=jnp.int32),
        sae_nnz=jnp.sum(on, dtype=jnp.int32),
        fired=jnp.any(on, axis=0),
        tp=count(on & truth),
        fp=count(on & ~truth),
        fn=count(~on & truth),
        tn=count(~on & ~truth),
        shrink=jnp.sum(jnp.where(valid, norm_hat / jnp.where(valid, norm_x, 1.0), 0.0)),
        shrink_n=jnp.sum(valid, dtype=jnp.int32),
        sum_x=jnp.sum(x, axis=0),
        sum_sq=jnp.sum(x * x),
        sum_res=jnp.sum((x - x_hat) ** 2),
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
