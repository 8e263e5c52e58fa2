"""Scoring head rankings against a ground-truth head set: ROC AUC, ROC curve, precision/recall at the best
threshold, and the rule that turns patching effects into that set. Plain numpy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Roc(NamedTuple):
    fpr: np.ndarray  # (k,) false positive rate at each distinct threshold, from (0, 0) to (1, 1)
    tpr: np.ndarray  # (k,)
    thresholds: np.ndarray  # (k,) score threshold (score >= t counts as predicted positive); first is +inf


class PrecisionRecall(NamedTuple):
    threshold: float  # score >= threshold predicted positive
    precision: float
    recall: float
    f1: float  # the best F1 over all thresholds
    predicted: int  # number of heads predicted positive


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting one half (Mann-Whitney U
    with average ranks)."""
    s, y = _check(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> Roc:
    """True and false positive rates as the threshold falls through the distinct scores."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each block of tied scores
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return Roc(np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]], np.r_[np.inf, s[last]])


def best_precision_recall(scores: np.ndarray, labels: np.ndarray) -> PrecisionRecall:
    """Precision and recall at the threshold with the highest F1."""
    s, y = _check(scores, labels)
    roc = roc_curve(s, y)
    tp = roc.tpr[1:] * y.sum()
    predicted = tp + roc.fpr[1:] * (~y).sum()
    precision = tp / predicted
    recall = roc.tpr[1:]
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    i = int(np.argmax(f1))
    return PrecisionRecall(
        float(roc.thresholds[i + 1]), float(precision[i]), float(recall[i]), float(f1[i]), int(round(predicted[i]))
    )


def ground_truth(effect: np.ndarray, fraction: float = 0.1, top_n: int | None = None) -> np.ndarray:
    """Circuit heads from patching effects: |effect| >= fraction * max |effect|, or the top_n by |effect|.
    effect: any shape -> boolean mask of that shape."""
    a = np.abs(np.asarray(effect, float))
    if top_n is not None:
        if not 0 < top_n < a.size:
            raise ValueError(f"top_n must be in 1..{a.size - 1}, got {top_n}")
        mask = np.zeros(a.size, bool)
        mask[np.argsort(-a.ravel(), kind="stable")[:top_n]] = True
        return mask.reshape(a.shape)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return a >= fraction * a.max()


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, y = np.asarray(scores, float).ravel(), np.asarray(labels, bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in size")
    if y.all() or not y.any():
        raise ValueError("labels need at least one positive and one negative")
    return s, y


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their mean rank."""
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    first = np.r_[True, sorted_s[1:] != sorted_s[:-1]]
    group = np.cumsum(first) - 1
    starts = np.nonzero(first)[0]
    ends = np.r_[starts[1:], len(s)]
    mean_rank = (starts + ends + 1) / 2  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(s))
    ranks[order] = mean_rank[group]
    return ranks
