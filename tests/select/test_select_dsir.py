"""DSIR against a NumPy restatement: n-grams hashed by hand (murmurhash3, as sklearn's HashingVectorizer), an
add-one pool distribution, the target's interpolated toward it, and per-record sums of log ratios."""

from __future__ import annotations

import re

import numpy as np
import pytest

from saelab.select.baselines import DSIRScorer

POOL = ["set a timer for five minutes", "what is the weather today", "play some music", "set timer now"]
TARGETS = ["set a timer please", "timer for ten minutes"]


def _hand_counts(texts, buckets):
    from sklearn.utils import murmurhash3_32

    out = np.zeros((len(texts), buckets))
    for i, t in enumerate(texts):
        words = re.findall(r"(?u)\b\w\w+\b", t.lower())
        for g in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
            out[i, abs(murmurhash3_32(g, seed=0)) % buckets] += 1
    return out


@pytest.mark.parametrize("weight", [0.5, 0.9])
def test_dsir_matches_numpy(weight):
    buckets = 4096
    scorer = DSIRScorer(lambda: iter([POOL[:2], POOL[2:]]), buckets, weight)
    c = _hand_counts(POOL, buckets)  # (n, buckets)
    p_pool = (c.sum(0) + 1) / (c.sum() + buckets)
    t = _hand_counts(TARGETS, buckets)
    p_t = weight * t.sum(0) / t.sum() + (1 - weight) * p_pool
    np.testing.assert_allclose(scorer(TARGETS), c @ (np.log(p_t) - np.log(p_pool)), rtol=1e-10)
    each = [c @ (np.log(weight * r / r.sum() + (1 - weight) * p_pool) - np.log(p_pool)) for r in t]
    np.testing.assert_allclose(scorer.per_target(TARGETS), np.stack(each), rtol=1e-10)
    s = scorer(TARGETS)
    assert s[0] > s[2] and s[3] > s[2]  # timer records above the music one
    # the music record shares no bucket with the targets: each of its n-grams costs exactly log(1 - w)
    assert not (c[2] * t.sum(0)).any()
    assert s[2] == pytest.approx(c[2].sum() * np.log(1 - weight), rel=1e-10)


def test_dsir_weight_is_checked():
    with pytest.raises(ValueError, match="target_weight"):
        DSIRScorer(lambda: iter([POOL]), 64, 0.0)
