"""ROC AUC, ROC curve, best precision/recall and the ground-truth rule against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.circuits.scoring import best_precision_recall, ground_truth, roc_auc, roc_curve


def test_auc_hand_example() -> None:
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 1 + 0 (0.35 < 0.4) + 1 + 1 = 3 of 4
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)


def test_auc_ties_count_half() -> None:
    # positives {1, 2}, negatives {1, 0}: (1 vs 1) 0.5, (1 vs 0) 1, (2 vs 1) 1, (2 vs 0) 1 -> 3.5 / 4
    assert roc_auc(np.array([1, 1, 0, 2]), np.array([1, 0, 0, 1])) == pytest.approx(0.875)
    assert roc_auc(np.zeros(6), np.array([1, 0, 1, 0, 0, 0])) == pytest.approx(0.5)


def test_auc_equals_area_under_curve_and_brute_force() -> None:
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 60).astype(float)  # many ties
    y = rng.random(60) < 0.3
    roc = roc_curve(s, y)
    area = float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1]) / 2))  # trapezoids handle ties
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]])
    assert roc_auc(s, y) == pytest.approx(brute) == pytest.approx(area)
    assert (roc.fpr[0], roc.tpr[0], roc.fpr[-1], roc.tpr[-1]) == (0, 0, 1, 1)


def test_best_precision_recall_hand_example() -> None:
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    y = np.array([1, 1, 0, 1, 0])
    # thresholds: 0.9 -> P 1 R 1/3; 0.8 -> P 1 R 2/3 (F1 .8); 0.7 -> P 2/3 R 2/3; 0.6 -> P 3/4 R 1 (F1 6/7)
    pr = best_precision_recall(s, y)
    assert (pr.threshold, pr.precision, pr.recall, pr.predicted) == (0.6, 0.75, 1.0, 4)
    assert pr.f1 == pytest.approx(6 / 7)


def test_ground_truth_rules() -> None:
    e = np.array([[0.5, -0.2], [0.04, 0.06]])
    assert ground_truth(e, 0.1).tolist() == [[True, True], [False, True]]
    assert ground_truth(e, top_n=2).tolist() == [[True, True], [False, False]]
    with pytest.raises(ValueError, match="at least one positive"):
        roc_auc(np.ones(3), np.zeros(3))
