"""The uniqueness analysis at the scale of a real SAE must finish in under 2 minutes on a 2-core CPU."""

from __future__ import annotations

import time

import pytest

from saelab.atoms.coherence import coherence
from saelab.atoms.synthetic import make_codes, make_dictionary
from saelab.atoms.uniqueness import uniqueness


@pytest.mark.slow
def test_uniqueness_of_16k_atoms_on_100k_samples_under_two_minutes():
    D = make_dictionary(16_384, 576, "gaussian", seed=0)  # (m, d)
    codes = make_codes(100_000, 16_384, (32, 100), seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    c = coherence(D)
    u = uniqueness(c.per_atom, codes)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"per-atom coherence + per-sample uniqueness, 16,384 x 576, 100k samples: {seconds:.1f} s wall, "
        f"{cpu:.1f} s CPU (all threads)"
    )
    assert u.samples.l0.shape == (100_000,) and c.per_atom.shape == (16_384,)
    assert seconds < 120
