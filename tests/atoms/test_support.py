"""Support-restricted per-sample coherence (the alternative reading) against brute force, its fallback, and the
case that shows why the default reading (each active atom against all atoms) is the one the bound needs."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.atoms.codes import SparseCodes, to_dense
from saelab.atoms.coherence import coherence
from saelab.atoms.support import support_coherence
from saelab.atoms.synthetic import make_dictionary, synthesize
from saelab.atoms.uniqueness import UniquenessAccumulator, uniqueness


def _brute(Dn: np.ndarray, Z: np.ndarray) -> np.ndarray:
    out = []
    for z in Z:
        s = np.flatnonzero(z)
        G = np.abs(Dn[s] @ Dn[s].T)
        np.fill_diagonal(G, 0)
        out.append(G.max() if len(s) > 1 else 0.0)
    return np.array(out)


def test_matches_brute_force_and_falls_back_above_max_k():
    rng = np.random.default_rng(0)
    Dn = make_dictionary(40, 12, "gaussian", seed=0)  # (m, d) unit rows
    Z = np.zeros((30, 40))
    for row in Z:
        row[rng.choice(40, rng.integers(2, 9), replace=False)] = rng.uniform(0.5, 1.0)
    Z[0] = 0.0  # empty code
    Z[1, :] = 0.0
    Z[1, 7] = 1.0  # one atom: no pair
    Z[2, :20] = 1.0  # 20 active > max_k = 8: falls back to max_{i in supp} mu_i
    per_atom = np.asarray(coherence(Dn).per_atom)
    got = np.asarray(support_coherence(Dn, Z.astype(np.float32), per_atom, max_k=8))
    l0 = (Z != 0).sum(1)
    ref = np.where(l0 > 8, [per_atom[z != 0].max(initial=0) for z in Z], _brute(Dn, Z))
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert got[0] == got[1] == 0.0 and l0[3:].max() <= 8  # the rest are exact
    assert (got <= np.array([per_atom[z != 0].max(initial=0) for z in Z]) + 1e-6).all()  # never above default


def test_support_reading_calls_a_non_unique_code_unique():
    # Donoho-Elad's extremal pair (see test_recovery): 8 spikes equal 8 Hadamard atoms in R^64. The spikes are
    # mutually orthogonal, so mu_supp = 0 < 1/15 and the support reading says "unique"; the default reading
    # (mu_i = 1/8 against all atoms) says not unique, and the second 8-sparse representation proves it right.
    d = 64
    D = make_dictionary(2 * d, d, "two_bases", seed=6)
    spikes = SparseCodes(np.ones((1, 8), np.float32), np.arange(8, dtype=np.int32)[None])
    hadamard = SparseCodes(np.ones((1, 8), np.float32), (d + 8 * np.arange(8, dtype=np.int32))[None])
    np.testing.assert_allclose(synthesize(D, spikes), synthesize(D, hadamard), atol=1e-5)
    per_atom = coherence(D).per_atom
    Z = np.asarray(to_dense(spikes, 2 * d))
    acc = UniquenessAccumulator(per_atom)
    acc.add(Z, support_coherence(D, Z, per_atom))
    alt = acc.result()
    assert float(alt.samples.mu[0]) == pytest.approx(0.0, abs=1e-6) and alt.frac_samples_unique == 1.0
    assert uniqueness(per_atom, Z).frac_samples_unique == 0.0
