"""The downstream summary over seeds: mean and population std per method, and its table."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.select.downstream import _summary, format_summary


def test_summary_over_seeds_by_hand():
    def r(p, after):
        return {"label_precision": p, "eval_loss_before": 5.0, "eval_loss_after": after}

    per_seed = {0: {"jaccard": r(0.5, 3.0), "bm25": r(0.4, 3.2)}, 1: {"jaccard": r(0.7, 3.4), "bm25": r(0.4, 3.0)}}
    s = _summary(per_seed, ["jaccard", "bm25"])
    assert s["jaccard"]["label_precision"] == pytest.approx([0.6, 0.1])
    assert s["jaccard"]["eval_loss_after"] == pytest.approx([3.2, np.std([3.0, 3.4])])
    assert s["bm25"]["label_precision"] == pytest.approx([0.4, 0.0])
    table = format_summary(s, 2).splitlines()
    assert table[2] == "| jaccard | 0.600 +- 0.100 | 3.2000 +- 0.2000 | 5.0000 |"
    assert len(table) == 4
