"""saelab.synth.score against SAELens's own evaluator (`eval_sae_on_synthetic_data`) on the same SAE and the
same samples: the SAE is one SAELens-format directory that both libraries load, the true activations are
ours, and both sides get the hidden vectors SAELens's `FeatureDictionary` computes from them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from saelab.sae import SAEParams, load_sae, sae_config, save_saelens
from saelab.synth import batches, score_samples
from saelab.synth.score import cosines, mcc
from tests.peer_modules import peer

sae_lens = peer("sae_lens")
from sae_lens.synthetic import FeatureDictionary  # noqa: E402
from sae_lens.synthetic.evals import eval_sae_on_synthetic_data, mean_correlation_coefficient  # noqa: E402

L, N_SAMPLES, BATCH = 96, 6000, 2000
SAES = {
    "topk": {"k": 6},
    "jumprelu": {},
    "relu": {},
    "batchtopk": {"k": 6},
}


class _Replay:
    """Stands in for SAELens's ActivationGenerator: `sample(n)` hands out our true activations in order."""

    def __init__(self, acts: list[np.ndarray]) -> None:
        self.acts = list(acts)

    def sample(self, n: int):
        a = self.acts.pop(0)
        assert a.shape[0] == n, "SAELens asked for another batch size than the one replayed"
        return torch.from_numpy(a)


def _sae(world, architecture: str, tmp_path):
    """An SAE whose decoder rows are noisy copies of L true features (so matches, F1 and MCC are far from 0),
    written in SAELens's format."""
    key = jax.random.key(7)
    noise = jax.random.normal(key, (L, world.hidden_dim)) * 0.15
    W_dec = world.features[: 2 * L : 2] + noise
    W_dec = W_dec / jnp.linalg.norm(W_dec, axis=1, keepdims=True)
    cfg = sae_config(architecture=architecture, d_in=world.hidden_dim, d_sae=L, **SAES[architecture])
    thr = None
    if cfg.uses_threshold:
        thr = jnp.full((L,), 1.5 if architecture == "jumprelu" else 2.0)
    b_enc = jnp.full((L,), -0.5 if architecture == "relu" else 0.0)
    params = SAEParams(W_dec.T * 1.0, b_enc, W_dec * 1.0, world.bias, thr)
    return save_saelens(tmp_path / architecture, params, cfg, {"hook_name": "synthetic"})


@pytest.mark.parametrize("architecture", sorted(SAES))
def test_scores_equal_saelens_evaluator(world, architecture, tmp_path):
    path = _sae(world, architecture, tmp_path)
    ours_sae = load_sae(path)
    theirs_sae = sae_lens.SAE.load_from_disk(str(path))
    fd = FeatureDictionary(world.num_features, world.hidden_dim, bias=False, initializer=None)
    with torch.no_grad():
        fd.feature_vectors.copy_(torch.from_numpy(np.asarray(world.features)))
        fd.bias = torch.nn.Parameter(torch.from_numpy(np.asarray(world.bias)), requires_grad=False)
    stream = batches(world, BATCH, seed=11)
    acts = [np.asarray(next(stream).features) for _ in range(N_SAMPLES // BATCH)]
    with torch.no_grad():
        hidden = [fd(torch.from_numpy(a)).numpy() for a in acts]
    theirs = eval_sae_on_synthetic_data(theirs_sae, fd, _Replay(acts), num_samples=N_SAMPLES, batch_size=BATCH)
    ours = score_samples(
        ours_sae.encode,
        lambda z, x: ours_sae.decode(z, x),
        ours_sae.W_dec,
        world.features,
        zip(hidden, acts, strict=True),
    )
    c = theirs.classification
    expected = {
        "f1": c.f1_score,
        "precision": c.precision,
        "recall": c.recall,
        "accuracy": c.accuracy,
        "mcc": theirs.mcc,
        "uniqueness": theirs.uniqueness,
        "explained_variance": theirs.explained_variance,
        "sae_l0": theirs.sae_l0,
        "true_l0": theirs.true_l0,
        "dead_latents": theirs.dead_latents,
        "shrinkage": theirs.shrinkage,
    }
    assert ours.n_samples == N_SAMPLES and ours.n_latents == L
    assert 0.05 < ours.f1 < 0.99 and ours.sae_l0 > 1, f"a degenerate test SAE: {ours}"
    # EV is compared as the unexplained fraction mse / var, the quantity both sides sum (near EV = 0 a relative
    # tolerance on EV itself would ask for more digits than float32 sums carry)
    expected["explained_variance"], ours = (
        1 - expected["explained_variance"],
        ours._replace(explained_variance=1 - ours.explained_variance),
    )
    diffs = {
        k: (getattr(ours, k), v)
        for k, v in expected.items()
        if getattr(ours, k) != pytest.approx(v, rel=1e-6, abs=1e-9)
    }
    assert not diffs, f"saelab vs SAELens: {diffs}"


def test_mcc_is_the_optimal_one_to_one_matching():
    """By hand: 2 latents, 3 features; the greedy match (both latents on feature 0) is not one-to-one."""
    C = np.array([[0.9, 0.8, 0.0], [0.85, 0.1, 0.0]], np.float32)
    assert mcc(C) == pytest.approx((0.8 + 0.85) / 2)


def test_mcc_equals_saelens_on_random_directions():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40, 16)).astype(np.float32), rng.standard_normal((70, 16)).astype(np.float32)
    ours = mcc(np.abs(np.asarray(cosines(jnp.asarray(a), jnp.asarray(b)))))
    theirs = mean_correlation_coefficient(torch.from_numpy(a), torch.from_numpy(b))
    assert ours == pytest.approx(theirs, rel=1e-6)
