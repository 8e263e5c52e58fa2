"""The atoms claim on ground truth (Hu et al., arXiv 2509.20784; docs/methods.md "Atoms"): saelab's atoms
analysis (AIP coherence, uniqueness, q*, LASSO recovery) of each SAE's dictionary beside its true-feature
recovery (F1, MCC), and the same analysis of the world's true dictionary with its true codes as the reference.

Every number comes from `saelab.atoms` unchanged: the AIP metric is estimated from the same fresh samples the
dictionaries are measured on; the true dictionary's uniqueness uses the true codes a (its own "encoder"), and
its LASSO row recovers the true codes from x - b.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saelab.atoms import AnalysisOptions, analyse, coherence, from_sae, metric_from_activations, recover, uniqueness
from saelab.sae import LoadedSAE
from saelab.synth.sample import sampler
from saelab.synth.world import World

ATOMS_COLUMNS = ("coherence", "uniqueness", "uniqueness_samples", "q_star", "lasso_precision", "lasso_recall")


def atoms_rows(
    world: World, saes: dict[str, LoadedSAE], n_samples: int, seed: int, options: AnalysisOptions
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the true dictionary's row, name -> the SAE's row), each with ATOMS_COLUMNS and l0, measured on
    `n_samples` fresh samples (stream `seed`)."""
    sample = sampler(world, n_samples)(jax.random.key(seed))
    X = np.asarray(sample.hidden)  # (n, d)
    metric = metric_from_activations(jnp.asarray(X), centred=options.centred, max_cond=options.max_cond)
    rows = {}
    for name, sae in saes.items():
        r = analyse(from_sae(sae, name), X, metric, options).row()
        rows[name] = {"l0": r["l0"], **{k: r[k] for k in ATOMS_COLUMNS}}
    return truth_row(world, X, np.asarray(sample.features), metric, options), rows


def truth_row(world: World, X: np.ndarray, A: np.ndarray, metric, options: AnalysisOptions) -> dict[str, Any]:
    """The atoms measurements of the true features F with the true codes A (n, N) of samples X = A F + b."""
    coh = coherence(world.features, metric)
    u = uniqueness(coh.per_atom, jnp.asarray(A), atom_definition=options.atom_definition)
    n_rec = min(options.recovery_samples, X.shape[0])
    rec = None
    if n_rec:
        Xc = jnp.asarray(X[:n_rec]) - world.bias  # the true codes reconstruct x - b
        rec = recover(
            Xc,
            world.features,
            jnp.asarray(A[:n_rec]),
            metric=metric,
            lam=options.recovery_lam,
            n_iter=options.recovery_iters,
            nonneg=True,
            block=n_rec,
        )
    return {
        "l0": float(np.mean(np.count_nonzero(A, axis=1))),
        "coherence": coh.mu,
        "uniqueness": u.frac_atoms_unique,
        "uniqueness_samples": u.frac_samples_unique,
        "q_star": u.q_star.q,
        "lasso_precision": rec.precision if rec else None,
        "lasso_recall": rec.recall if rec else None,
    }
