"""Uniqueness of sparse codes (Donoho-Elad / Gribonval-Nielsen), per sample, per atom and q*.

A K-sparse code over a dictionary of coherence mu is the unique sparsest code of its signal, and l1
minimisation recovers it, when `mu < 1 / (2K - 1)` (equivalently K < (1 + 1/mu) / 2). Following Hu et al.
(arXiv 2509.20784, docs/methods.md, "Atoms"), each sample uses its own K = ||z||_0 and the coherence restricted
to the atoms involved, every active atom against ALL atoms: `mu_sample = max_{i in supp z} mu_i` with mu_i the
per-atom coherence from `coherence.coherence`. The empty code (K = 0) is unique by convention (bound = inf).
Callers may pass their own per-sample coherence instead (`sample_mu`, e.g. the support-restricted
alternative of `support.support_coherence`); everything downstream is then computed from it.

Per-atom definitions (the result says which one its per-atom numbers use; counts for both are always kept):
- "all_samples" (default): an atom is unique if every sample in which it fires satisfies the per-sample bound.
- "median_k": mu_i < 1 / (2 K_med - 1), K_med the lower median of ||z||_0 over the samples in which the atom
  fires; computed exactly from streaming counts, as "at least half of those samples have mu_i < 1/(2K - 1)".
Atoms that never fire are neither unique nor non-unique: they are left out of the per-atom fraction.

Stability q* (docs/methods.md, "Atoms"): `q* = sup {q : mu_q < 1 / (2 K_q - 1)}` with mu_q, K_q the q-quantiles (linear
interpolation) of per-sample coherence and per-sample L0 over all samples, scanned on a grid of q in [0, 1];
0 when no q satisfies it.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.atoms.codes import Codes, SparseCodes, check, n_rows, rows

AtomDefinition = Literal["all_samples", "median_k"]

DEFINITIONS = {
    "frac_samples_unique": "fraction of samples z with max_{i in supp z} mu_i < 1/(2||z||_0 - 1)",
    "all_samples": "fraction of fired atoms whose every firing sample satisfies the per-sample bound",
    "median_k": "fraction of fired atoms with mu_i < 1/(2 K_med - 1), K_med = lower median L0 of its samples",
    "q_star": "sup q in [0,1] with mu_q < 1/(2 K_q - 1); mu_q, K_q = q-quantiles of per-sample coherence, L0",
}


class SampleStats(NamedTuple):
    """Per-sample quantities of the bound."""

    l0: jax.Array  # (n,) int32, K = ||z||_0
    mu: jax.Array  # (n,) max_{i in supp z} mu_i (0 for the empty code)
    unique: jax.Array  # (n,) bool, mu < 1/(2K - 1)


class AtomCounts(NamedTuple):
    """Per-atom counts over samples, enough for both per-atom definitions."""

    fires: jax.Array  # (m,) samples in which the atom is active
    fires_not_unique: jax.Array  # (m,) of those, samples failing the per-sample bound
    fires_within_own_bound: jax.Array  # (m,) of those, samples with mu_i < 1/(2K - 1)


class QStar(NamedTuple):
    q: float  # sup {q : mu_q < 1/(2 K_q - 1)}, 0 if none
    mu_q: float  # the per-sample coherence quantile at q
    k_q: float  # the L0 quantile at q


class Uniqueness(NamedTuple):
    """Uniqueness of a set of codes; `summary()` labels every number with its definition."""

    samples: SampleStats
    counts: AtomCounts
    frac_samples_unique: float
    atom_definition: AtomDefinition
    atom_unique: jax.Array  # (m,) bool under atom_definition (False for atoms that never fire)
    frac_atoms_unique: float  # among atoms that fired, under atom_definition
    n_atoms_fired: int
    q_star: QStar

    def frac_atoms_unique_as(self, definition: AtomDefinition) -> float:
        """The per-atom fraction under either definition (both come from the same counts)."""
        return float(atom_unique(self.counts, definition).sum() / max(self.n_atoms_fired, 1))

    def summary(self) -> dict[str, tuple[float, str]]:
        """name -> (value, definition)."""
        return {
            "frac_samples_unique": (self.frac_samples_unique, DEFINITIONS["frac_samples_unique"]),
            f"frac_atoms_unique[{self.atom_definition}]": (
                self.frac_atoms_unique,
                DEFINITIONS[self.atom_definition],
            ),
            "n_atoms_fired": (float(self.n_atoms_fired), "atoms active in at least one sample"),
            "q_star": (self.q_star.q, DEFINITIONS["q_star"]),
            "mu_q_star": (self.q_star.mu_q, "per-sample coherence quantile at q*"),
            "k_q_star": (self.q_star.k_q, "L0 quantile at q*"),
        }


def bound(l0: jax.Array) -> jax.Array:
    """The coherence below which a ||z||_0 = K code is unique: 1/(2K - 1), inf for K = 0."""
    k = jnp.asarray(l0, jnp.float32)
    return jnp.where(2 * k - 1 > 0, 1 / jnp.maximum(2 * k - 1, 1e-30), jnp.inf)


def uniqueness(
    per_atom: jax.Array,
    codes: Codes,
    *,
    atom_definition: AtomDefinition = "all_samples",
    block: int = 4096,
    n_q: int = 10001,
) -> Uniqueness:
    """Per-sample, per-atom and q* uniqueness of codes (n, m) dense or sparse, given per-atom coherence
    mu_i (m,) of the dictionary. Processed in blocks of `block` samples (dense: block x m
    floats a step)."""
    acc = UniquenessAccumulator(per_atom)
    check(codes, acc.m)
    n = n_rows(codes)
    block = max(1, min(block, n))
    for s in range(0, n, block):
        acc.add(rows(codes, s, min(s + block, n)))
    return acc.result(atom_definition, n_q)


class UniquenessAccumulator:
    """Streaming form of `uniqueness`: `add` code blocks as they are encoded, then `result`.

    Blocks are padded to the size of the first one, so a stream of equal blocks compiles once.
    """

    def __init__(self, per_atom: jax.Array) -> None:
        self.per_atom = jnp.asarray(per_atom, jnp.float32)  # (m,)
        self.m = self.per_atom.shape[0]
        self.size = 0
        self.samples: list[SampleStats] = []
        self.counts = AtomCounts(*(jnp.zeros(self.m, jnp.int32) for _ in range(3)))

    def add(self, codes: Codes, sample_mu: jax.Array | None = None) -> SampleStats:
        """Add one (b, m) block (dense or sparse); `sample_mu` (b,) replaces the per-sample coherence
        max_{i in supp z} mu_i. Returns the block's per-sample stats."""
        check(codes, self.m)
        b = n_rows(codes)
        if sample_mu is not None and sample_mu.shape != (b,):
            raise ValueError(f"sample_mu must have shape ({b},), got {sample_mu.shape}")
        self.size = max(self.size, b)
        mu = None if sample_mu is None else jnp.pad(jnp.asarray(sample_mu, jnp.float32), (0, self.size - b))
        st, ct = _block_stats(self.per_atom, _pad(codes, self.size), mu)
        st = SampleStats(*(a[:b] for a in st))
        self.samples.append(st)
        self.counts = AtomCounts(*(a + c for a, c in zip(self.counts, ct, strict=True)))
        return st

    def result(self, atom_definition: AtomDefinition = "all_samples", n_q: int = 10001) -> Uniqueness:
        if not self.samples:
            raise ValueError("no code blocks were added")
        stats = SampleStats(*(jnp.concatenate(x) for x in zip(*self.samples, strict=True)))
        counts = self.counts
        unique = atom_unique(counts, atom_definition)
        n_fired = int((counts.fires > 0).sum())
        return Uniqueness(
            samples=stats,
            counts=counts,
            frac_samples_unique=float(stats.unique.mean()),
            atom_definition=atom_definition,
            atom_unique=unique,
            frac_atoms_unique=float(unique.sum() / max(n_fired, 1)),
            n_atoms_fired=n_fired,
            q_star=q_star(stats.mu, stats.l0, n_q),
        )


def atom_unique(counts: AtomCounts, definition: AtomDefinition = "all_samples") -> jax.Array:
    """(m,) bool per-atom uniqueness under either definition (module docstring); False if never fired."""
    fired = counts.fires > 0
    if definition == "all_samples":
        return fired & (counts.fires_not_unique == 0)
    if definition == "median_k":
        return fired & (2 * counts.fires_within_own_bound >= counts.fires)
    raise ValueError(f"unknown per-atom definition {definition!r}")


def q_star(mu: jax.Array, l0: jax.Array, n_q: int = 10001) -> QStar:
    """sup {q : mu_q < 1/(2 K_q - 1)} over q on an n_q-point grid of [0, 1] (0 if no q satisfies it)."""
    qs = np.linspace(0.0, 1.0, n_q)
    mu_q = np.quantile(np.asarray(mu, np.float64), qs)
    k_q = np.quantile(np.asarray(l0, np.float64), qs)
    with np.errstate(divide="ignore"):
        ok = mu_q < np.where(2 * k_q - 1 > 0, 1 / (2 * k_q - 1), np.inf)
    if not ok.any():
        return QStar(0.0, float(mu_q[0]), float(k_q[0]))
    i = int(np.flatnonzero(ok)[-1])
    return QStar(float(qs[i]), float(mu_q[i]), float(k_q[i]))


def _pad(codes: Codes, size: int) -> Codes:
    extra = size - n_rows(codes)
    if extra == 0:
        return codes
    if isinstance(codes, SparseCodes):
        return SparseCodes(*(jnp.pad(jnp.asarray(a), ((0, extra), (0, 0))) for a in codes))
    return jnp.pad(jnp.asarray(codes), ((0, extra), (0, 0)))


@jax.jit
def _block_stats(per_atom: jax.Array, codes: Codes, sample_mu: jax.Array | None) -> tuple[SampleStats, AtomCounts]:
    if isinstance(codes, SparseCodes):
        return _sparse_stats(per_atom, codes, sample_mu)
    return _dense_stats(per_atom, codes, sample_mu)


def _sparse_stats(
    per_atom: jax.Array, codes: SparseCodes, sample_mu: jax.Array | None
) -> tuple[SampleStats, AtomCounts]:
    m = per_atom.shape[0]
    active = codes.values != 0  # (b, k)
    mu_act = per_atom[codes.indices]  # (b, k)
    l0 = active.sum(1, dtype=jnp.int32)  # (b,)
    mu = jnp.max(jnp.where(active, mu_act, 0.0), axis=1) if sample_mu is None else sample_mu
    b = bound(l0)
    unique = mu < b
    count = partial(_scatter_count, codes.indices, m)
    return SampleStats(l0, mu, unique), AtomCounts(
        count(active),
        count(active & ~unique[:, None]),
        count(active & (mu_act < b[:, None])),
    )


def _dense_stats(per_atom: jax.Array, Z: jax.Array, sample_mu: jax.Array | None) -> tuple[SampleStats, AtomCounts]:
    active = Z != 0  # (b, m)
    l0 = active.sum(1, dtype=jnp.int32)
    mu = jnp.max(jnp.where(active, per_atom[None, :], 0.0), axis=1) if sample_mu is None else sample_mu
    b = bound(l0)
    unique = mu < b
    return SampleStats(l0, mu, unique), AtomCounts(
        active.sum(0, dtype=jnp.int32),
        (active & ~unique[:, None]).sum(0, dtype=jnp.int32),
        (active & (per_atom[None, :] < b[:, None])).sum(0, dtype=jnp.int32),
    )


def _scatter_count(indices: jax.Array, m: int, mask: jax.Array) -> jax.Array:
    return jnp.zeros(m, jnp.int32).at[indices.reshape(-1)].add(mask.reshape(-1).astype(jnp.int32))
