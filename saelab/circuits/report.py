"""Outputs of a circuits run: circuits.json, a layer x head heat map per method and the ROC curves (PNG)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from saelab.circuits.scoring import Roc


def write_json(result: Mapping[str, Any], path: Path) -> Path:
    """Write `result` (numpy values converted) atomically: a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_plain(result), indent=2))
    tmp.replace(path)
    return path


def heatmap(scores: np.ndarray, title: str, path: Path, truth: np.ndarray | None = None) -> Path:
    """Layer x head heat map of `scores` (n_layers, n_heads); ground-truth heads outlined when given."""
    plt = _pyplot()
    n_layers, n_heads = scores.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.35 * n_heads, 1.0 + 0.22 * n_layers))
    signed = bool((scores < 0).any())
    lim = float(np.abs(scores).max()) or 1.0
    im = ax.imshow(
        scores,
        cmap="RdBu_r" if signed else "viridis",
        vmin=-lim if signed else 0.0,
        vmax=lim,
        aspect="auto",
        interpolation="nearest",
    )
    if truth is not None:
        for layer, head in zip(*np.nonzero(truth), strict=True):
            ax.add_patch(plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, ec="black", lw=1.2))
    ax.set(xlabel="head", ylabel="layer", title=title, xticks=range(n_heads))
    ax.set_yticks(range(0, n_layers, max(1, n_layers // 15)))
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path, plt)


def roc_plot(curves: Mapping[str, tuple[Roc, float]], title: str, path: Path) -> Path:
    """ROC curve per method, AUC in the legend. Points are joined by straight lines: a block of tied scores is
    a diagonal segment, which is how the AUC counts ties (one half)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (roc, auc) in curves.items():
        ax.plot(roc.fpr, roc.tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path, plt)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, plt) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x
