"""saelab's calibrated SAE-code score: ~0 on uninformative codes whatever their number, high for a selective
head; the aligned-position finder on IOI templates; the method end to end on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.circuits.calibrated import (
    activation_shift,
    aligned_positions,
    calibrated_activation_shift,
    calibrated_scores,
    calibrated_shift,
    code_shift,
    null_node_scores,
    pair_disagreement,
)
from saelab.circuits.codes import node_scores
from saelab.circuits.config import CircuitsConfig
from saelab.circuits.run import run
from saelab.circuits.tasks import build_task, prefix_ids


@pytest.mark.parametrize("k", [5, 200])
def test_calibrated_score_is_about_zero_on_random_codes(k: int) -> None:
    rng = np.random.default_rng(k)
    pos, neg = rng.integers(0, k, (100, 300)), rng.integers(0, k, (100, 300))
    z = calibrated_scores(pos, neg, permutations=100, seed=1)
    assert abs(z.mean()) < 0.2 and z.std() < 1.5
    if k == 200:  # the raw count is far from 0: it measures how many codes a head has
        assert node_scores(pos, neg).mean() > 40


def test_selective_head_outscores_every_random_head() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 200, (100, 50)), rng.integers(0, 200, (100, 50))
    pos[:, 0], neg[:, 0] = 7, 3  # head 0: one code on positives, another on negatives
    raw, z = node_scores(pos, neg), calibrated_scores(pos, neg, permutations=100)
    assert raw[0] == 1 and raw[1:].min() > 1  # uncalibrated, the selective head ranks last
    assert z[0] > 5 and z[0] > z[1:].max()


def test_null_swaps_labels_within_pairs() -> None:
    pos, neg = np.array([[0], [0], [1]]), np.array([[1], [1], [0]])
    null = null_node_scores(pos, neg, permutations=64, seed=0)
    # any swap pattern leaves codes {0, 1} on both sides unless all three pairs agree in direction
    assert set(np.unique(null)) <= {0, 1} and (null == 0).mean() > 0.5
    assert null_node_scores(pos, pos, 10).max() == 0  # identical pairs: nothing is ever positive-only


def test_aligned_positions_on_ioi_find_end_s1_and_s2(tokenizer) -> None:
    pre = prefix_ids(tokenizer)
    for negative in ("abc", "paper"):
        t = build_task("ioi", tokenizer, 24, 5, prefix=pre, ioi_negative=negative)
        cols = aligned_positions(t)
        assert set(cols) == {"end", "diff", "ref"}
        rows = np.arange(t.n)
        assert (cols["end"] == t.pos.shape[1] - 1).all()
        s, io = t.targets["wrong"], t.targets["answer"]
        assert (t.pos[rows, cols["ref"]] == s).all()  # S2: the subject's second mention
        assert (cols["ref"] > cols["diff"]).all() and (cols["ref"] < cols["end"]).all()
        names = t.pos[rows, cols["diff"]]
        assert np.isin(names, np.stack([s, io])).all()  # the last changed token is a first-clause name
        assert ((names == s) == (negative == "paper")).all() or negative == "abc"
        for i in rows:  # S2 is the last repeat of a name: nothing between it and END names S
            assert not (t.pos[i, cols["ref"][i] + 1 : cols["end"][i] + 1] == s[i]).any()


def test_aligned_positions_drop_a_role_some_pair_lacks(tokenizer) -> None:
    t = build_task("greater-than", tokenizer, 6, 0, prefix=prefix_ids(tokenizer))
    cols = aligned_positions(t)
    assert "end" in cols and "diff" in cols
    end = t.pos.shape[1] - t.scoring_tokens
    assert (cols["end"] == end - 1).all() and (
        t.pos[np.arange(6), cols["diff"]] != t.neg[np.arange(6), cols["diff"]]
    ).all()


def test_saelab_default_end_to_end(tokenizer, tiny, tmp_path) -> None:
    path = tiny(tmp_path / "m", "llama", tokenizer)
    cfg = CircuitsConfig(
        task="ioi",
        model=str(path),
        method="sae-codes",
        ground_truth="none",
        sae_prompts=4,
        count_prompts=100,
        epochs=20,
        latents=16,
        progress=False,
        out=tmp_path / "o",
    )
    assert cfg.positions == "aligned" and cfg.recipe == "saelab"
    res = run(cfg)
    assert len(res["scores"]["sae-codes"]) == 12 and np.isfinite(res["scores"]["sae-codes"]).all()
    assert res["sae_codes"]["counted_pairs"] == 100


def test_pair_disagreement_counts_pairs_whose_codes_differ() -> None:
    pos = np.array([[1, 4, 0], [2, 4, 0], [3, 5, 0]])
    neg = np.array([[1, 6, 0], [3, 4, 0], [2, 6, 0]])
    assert pair_disagreement(pos, neg).tolist() == [2 / 3, 2 / 3, 0.0]
    rng = np.random.default_rng(0)  # noise codes: 1 - sum p^2 = 0.8 for 5 equally likely codes
    assert abs(pair_disagreement(rng.integers(0, 5, (4000, 1)), rng.integers(0, 5, (4000, 1)))[0] - 0.8) < 0.03


def test_code_shift_is_total_variation_of_the_paired_histograms() -> None:
    pos = np.array([[0, 1], [0, 1], [2, 1], [1, 1]])
    neg = np.array([[1, 1], [0, 2], [2, 1], [3, 1]])
    # head 0: pos histogram {0: 2, 2: 1, 1: 1}, neg {1: 1, 0: 1, 2: 1, 3: 1}: |1| + |0| + |0| + |-1| = 2
    assert code_shift(pos, neg).tolist() == [2 / 8, 2 / 8]
    swapped = code_shift(pos, neg, np.array([[1, 1, 1, 1], [-1, -1, -1, -1], [-1, 1, 1, 1]]))
    # swapping pair 0 in head 0: pos {1: 2, 0: 1, 2: 1}, neg {0: 2, 2: 1, 3: 1}: |2| + |-1| + |0| + |-1| = 4
    assert swapped[:, 0].tolist() == [2 / 8, 2 / 8, 4 / 8]
    assert swapped[:, 1].tolist() == [2 / 8, 2 / 8, 2 / 8]  # head 1's pair 0 agrees, so its swap changes nothing


@pytest.mark.parametrize("k", [5, 200])
def test_calibrated_shift_is_about_zero_on_random_codes_and_high_when_selective(k: int) -> None:
    rng = np.random.default_rng(k)
    pos, neg = rng.integers(0, k, (250, 60)), rng.integers(0, k, (250, 60))
    pos[:, 0], neg[:, 0] = 0, 1  # head 0 codes the label and nothing else
    z = calibrated_shift(pos, neg, permutations=100, seed=3)
    assert abs(z[1:].mean()) < 0.3
    assert z[0] > 5 and z[0] > z[1:].max() + 3


def test_activation_shift_is_the_code_shift_of_one_hot_codes_and_sums_signed_differences() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 4, (30, 3)), rng.integers(0, 4, (30, 3))
    one_hot = np.eye(4, dtype=np.float32)
    signs = np.where(rng.random((5, 30)) < 0.5, -1.0, 1.0)
    np.testing.assert_allclose(activation_shift(one_hot[pos], one_hot[neg]), 2 * code_shift(pos, neg), rtol=1e-6)
    np.testing.assert_allclose(
        activation_shift(one_hot[pos], one_hot[neg], signs), 2 * code_shift(pos, neg, signs), rtol=1e-6
    )
    f, g = rng.random((30, 3, 7)), rng.random((30, 3, 7))
    want = np.abs(np.einsum("n,nhl->hl", signs[2], f - g)).sum(-1) / 30
    np.testing.assert_allclose(activation_shift(f, g, signs)[2], want, rtol=1e-5)


@pytest.mark.parametrize("latents", [5, 200])
def test_soft_score_is_about_zero_without_task_information_and_high_with_it(latents: int) -> None:
    rng = np.random.default_rng(latents)
    pos = rng.exponential(1.0, (250, 40, latents)) * (rng.random((250, 40, latents)) < 0.1)
    neg = rng.exponential(1.0, (250, 40, latents)) * (rng.random((250, 40, latents)) < 0.1)
    pos[:, 0, 0] += 2.0  # head 0: one latent fires more on positives, nothing else differs
    z = calibrated_activation_shift(pos, neg, permutations=100, seed=2)
    assert abs(z[1:].mean()) < 0.3
    assert z[0] > 3 and z[0] > np.sort(z[1:])[-1]
