"""SAEBench sparse probing against sae-probes 0.4's own functions (`utils_data.py`, `run_sae_evals.py`,
`utils_training.py`): the dataset list and labels, the balanced train/test draw, the latent ranking and the probe
fit with its C search."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from saelab.evals.saebench import sparse_probing as sp
from tests.peer_modules import peer


def test_datasets_labels_and_split_match_sae_probes() -> None:
    """The binary datasets (same tags, same order), a dataset's labels and the RandomState(42) train/test indices
    are identical to sae-probes'."""
    data = peer("sae_probes.utils_data")
    assert list(sp.datasets()) == data.get_numbered_binary_tags()
    name = sp.QUICK_DATASETS[0]
    y = np.unique(sp.pd.read_csv(sp.datasets()[name], compression="zstd")["target"].to_numpy(), return_inverse=True)[1]
    assert np.array_equal(y, data.get_yvals(name))
    for n_train, n_test in ((1024, 3975), (37, 80)):
        theirs = data.get_train_test_indices(y[:5000], n_train, n_test, 0.5, 42)
        ours = sp.split(y[:5000], n_train, n_test)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_latent_ranking_matches_sae_probes() -> None:
    """`get_sorted_indices` with `mean_act_normalization` ranks the latents as ours (continuous random codes with
    zeros, so no ties; float32 means, compared on the top 40)."""
    run = peer("sae_probes.run_sae_evals")
    rng = np.random.default_rng(6)
    z = (rng.exponential(size=(200, 300)) * (rng.uniform(size=(200, 300)) > 0.7)).astype(np.float32)
    y = rng.integers(0, 2, 200)
    z[y == 1, :20] *= 1.5
    theirs = run.get_sorted_indices(torch.from_numpy(z), torch.from_numpy(y), run.mean_act_normalization)
    ours = np.asarray(sp.ranked_latents(jnp.asarray(z), jnp.asarray(y)))
    assert np.array_equal(ours[:40], theirs.numpy()[:40])


@pytest.mark.parametrize("n_train", [300, 60])
def test_probe_fit_matches_find_best_reg(n_train: int) -> None:
    """Test accuracy, AUC, weighted F1 and validation AUC equal `find_best_reg(penalty="l1", seed=42)`'s to 1e-9:
    the same sklearn solver, settings, seeds, C grid and validation splits (a held-out tail at 300 rows, six
    stratified folds at 60)."""
    training = peer("sae_probes.utils_training")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n_train + 200, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=len(x)) > 0).astype(int)
    theirs = training.find_best_reg(x[:n_train], y[:n_train], x[n_train:], y[n_train:], penalty="l1", seed=42)
    ours = sp.fit_probe(x[:n_train], y[:n_train], x[n_train:], y[n_train:])
    assert ours["test_accuracy"] == pytest.approx(theirs.metrics.test_acc, abs=1e-9)
    assert ours["test_auc"] == pytest.approx(theirs.metrics.test_auc, abs=1e-9)
    assert ours["test_f1"] == pytest.approx(theirs.metrics.test_f1, abs=1e-9)
    assert ours["val_auc"] == pytest.approx(theirs.metrics.val_auc, abs=1e-9)
    assert ours["test_accuracy"] > 0.7
