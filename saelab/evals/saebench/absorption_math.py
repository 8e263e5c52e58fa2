"""The arithmetic of SAEBench's absorption eval (sae-bench 0.6 `evals/absorption/`): k-sparse probe metrics, the
feature-split rule, per-prompt absorption, and the per-letter aggregation. Pure functions; absorption.py runs them.

Per prompt (`FeatureAbsorptionCalculator.calculate_absorption`), with p the unit probe direction of the word's
letter, `P = x . p`, `pi_i = z_i cos(W_dec[i], p)`, `M = sum over main latents of pi_i` and A the sum of the (up
to) three largest `pi_i` of non-main latents with cos >= 0.1 and `pi_i > 0`:
`fraction = 0 if M >= P or A / P < 0.4; 1 if M <= 0; else min(A, P - M) / (min(A, P - M) + M)`.
Full absorption: every main latent < 1e-8, the top-`pi` latent has cos >= 0.025, P >= 0, `pi_top / P >= 0.4`.
"""

from __future__ import annotations

import statistics
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

EPS = 1e-8
FRACTION_COS = 0.1
FULL_COS = 0.025
PROJECTION_SHARE = 0.4
MAX_ABSORBERS = 3


class PromptAbsorption(NamedTuple):
    fraction: jax.Array  # (n,)
    full: jax.Array  # (n,) bool
    probe_projection: jax.Array  # (n,) P


@jax.jit
def prompt_absorption(x: jax.Array, z: jax.Array, direction: jax.Array, cos: jax.Array, main: jax.Array):
    """x (n, d_in) activations, z (n, d_sae) codes, direction (n, d_in) each prompt's unit probe direction,
    cos (n, d_sae) cosines of the decoder rows with it, main (n, d_sae) bool main latents -> PromptAbsorption."""
    p_total = jnp.sum(x * direction, -1)  # (n,)
    proj = z * cos  # (n, d_sae)
    m = jnp.sum(jnp.where(main, proj, 0.0), -1)
    cand = (~main) & (cos >= FRACTION_COS) & (proj > 0)
    top = jax.lax.top_k(jnp.where(cand, proj, -jnp.inf), MAX_ABSORBERS)[0]
    a = jnp.sum(jnp.where(jnp.isfinite(top), top, 0.0), -1)
    absorbed = jnp.minimum(a, p_total - m)
    partial = jnp.clip(absorbed / (absorbed + m), 0.0, 1.0)
    none = (m >= p_total) | (a / p_total < PROJECTION_SHARE)
    fraction = jnp.where(none, 0.0, jnp.where(m <= 0.0, 1.0, partial))
    top_i = jnp.argmax(proj, -1)
    top_proj = jnp.take_along_axis(proj, top_i[:, None], -1)[:, 0]
    top_cos = jnp.take_along_axis(cos, top_i[:, None], -1)[:, 0]
    main_silent = jnp.all(jnp.where(main, z < EPS, True), -1)
    full = main_silent & (top_cos >= FULL_COS) & (p_total >= 0) & (top_proj / p_total >= PROJECTION_SHARE)
    return PromptAbsorption(fraction, full, p_total)


def f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Binary F1 (sklearn's `f1_score`, 0 when nothing is predicted or true)."""
    tp = float(np.sum(y & pred))
    denom = float(np.sum(y) + np.sum(pred))
    return 2 * tp / denom if denom else 0.0


def feature_splits(f1_by_k: list[float], feats_by_k: list[list[int]], jump: float = 0.03) -> list[int]:
    """The main latents of a letter: grow k while the k-sparse probe's F1 beats the best so far by more than
    `jump` (sae-bench's `add_feature_splits_to_metrics_df`); [] when even k = 1 does not beat -100."""
    best, split = -100.0, []
    for score, feats in zip(f1_by_k, feats_by_k, strict=True):
        if score > best + jump:
            best, split = score, list(feats)
        else:
            break
    return split


class LetterResult(NamedTuple):
    letter: str
    mean_absorption_fraction: float
    full_absorption_rate: float
    num_full_absorption: int
    num_probe_true_positives: int
    num_split_features: int


def aggregate(
    letters: np.ndarray,
    fraction: np.ndarray,
    full: np.ndarray,
    splits: dict[str, list[int]],
    probe_f1: dict[str, float],
) -> tuple[list[LetterResult], dict[str, float]]:
    """Per-letter sums over the probe's true positives divided by their count (sae-bench's
    `_aggregate_results_df`), then the means (and sample std) over letters whose probe F1 > 0.6."""
    results = []
    for letter in sorted(set(letters.tolist())):
        rows = letters == letter
        n = int(rows.sum())
        results.append(
            LetterResult(
                letter,
                float(fraction[rows].sum() / n),
                float(full[rows].sum() / n),
                int(full[rows].sum()),
                n,
                len(splits[letter]),
            )
        )
    kept = [r for r in results if probe_f1[r.letter] > 0.6]
    summary = {}
    for key, name in (
        ("mean_absorption_fraction", "absorption_fraction"),
        ("full_absorption_rate", "full_absorption"),
        ("num_split_features", "num_split_features"),
    ):
        vals = [float(getattr(r, key)) for r in kept]
        summary[f"mean_{name}_score" if name != "num_split_features" else "mean_num_split_features"] = (
            statistics.mean(vals) if vals else float("nan")
        )
        summary[f"std_dev_{name}_score" if name != "num_split_features" else "std_dev_num_split_features"] = (
            statistics.stdev(vals) if len(vals) > 1 else float("nan")
        )
    summary["letters_scored"] = len(kept)
    return results, summary
