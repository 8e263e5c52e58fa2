"""The scorers' math on hand-made cases: accuracy and AUROC (against scikit-learn's roc_auc_score), a judge
that is always right scores 1.0, a coin-flipping one about 0.5, and the shuffled-explanation control."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.evals.autointerp.explain import explain, shuffled
from saelab.evals.autointerp.scorers import (
    accuracy,
    auroc,
    balanced,
    detection_samples,
    fuzzing_samples,
    marked,
    score_classifier,
    score_embedding,
)

from .fakes import KEYWORDS, KeywordJudge, RandomJudge, bag_of_words, latent_examples


def test_accuracy_counts_no_answer_as_wrong() -> None:
    acc, answered = accuracy(jnp.array([1, 0, -1, 1]), jnp.array([1, 1, 0, 1]))
    assert float(acc) == 0.5 and float(answered) == 0.75


def test_auroc_matches_sklearn_with_ties() -> None:
    """Equal to sklearn.metrics.roc_auc_score to 1e-6 (float32 sums) on scores with ties."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(np.float32)  # many ties
    label = rng.integers(0, 2, 60)
    got = float(auroc(jnp.asarray(scores), jnp.asarray(label)))
    assert got == pytest.approx(roc_auc_score(label, scores), abs=1e-6)
    assert float(auroc(jnp.array([3.0, 2.0, 1.0, 0.0]), jnp.array([1, 1, 0, 0]))) == 1.0
    assert float(auroc(jnp.array([1.0, 1.0, 1.0, 1.0]), jnp.array([1, 0, 1, 0]))) == 0.5


def test_samples_are_balanced_and_fuzzing_marks_follow_the_threshold() -> None:
    ex = latent_examples(0, "cat", 6)
    ex = ex._replace(negative=ex.negative._replace(tokens=ex.negative.tokens[:4], acts=ex.negative.acts[:4]))
    pos, neg = balanced(ex)
    assert len(pos.tokens) == len(neg.tokens) == 4
    rng = np.random.default_rng(0)
    det = detection_samples(ex, rng)
    assert sorted(s.label for s in det) == [0] * 4 + [1] * 4
    assert all("<<" not in s.text for s in det)
    assert marked(np.array([0.0, 1.0, 0.29, 0.3, 0.1]), 0.3).tolist() == [False, True, False, True, False]
    fuzz = fuzzing_samples(ex, 0.3, rng)
    for s in fuzz:  # positives mark the keyword only; negatives one random filler token (ceil of mean 1)
        assert s.text.count("<<") == 1
        assert ("<< cat>>" in s.text) == (s.label == 1)


def test_always_right_judge_scores_one_and_its_shuffled_control_chance() -> None:
    examples = [latent_examples(i, kw, 10) for i, kw in enumerate(KEYWORDS)]
    judge = KeywordJudge()
    explained = explain(judge, examples)
    assert [e.text for e in explained] == [f"the word {kw}" for kw in KEYWORDS] and all(e.tagged for e in explained)
    control = shuffled(len(examples), np.random.default_rng(0))
    assert (control != np.arange(len(examples))).all() and sorted(control) == list(range(len(examples)))
    rng = np.random.default_rng(1)
    for kind, make in (("detection", detection_samples), ("fuzzing", lambda ex, r: fuzzing_samples(ex, 0.3, r))):
        samples = [make(ex, rng) for ex in examples]
        own = [(e.text, s) for e, s in zip(explained, samples, strict=True)]
        other = [(explained[j].text, s) for j, s in zip(control, samples, strict=True)]
        scores = score_classifier(judge, kind, own + other, n_shown=5)
        assert [s.score for s in scores[:6]] == [1.0] * 6, kind
        assert [s.score for s in scores[6:]] == [0.5] * 6, kind  # all-0 answers on a balanced set
        assert all(s.answered == 1.0 and s.n == 20 for s in scores)
    assert judge.calls == [6, 48, 48]  # one judge call per stage: 12 items x 20 samples / 5 per prompt


def test_random_judge_scores_about_half() -> None:
    """400 samples: a fair coin's accuracy is 0.5 with standard deviation 0.025; the bound is 3 of them."""
    ex = latent_examples(0, "cat", 200)
    samples = detection_samples(ex, np.random.default_rng(0))
    (score,) = score_classifier(RandomJudge(), "detection", [("the word cat", samples)], n_shown=8)
    assert abs(score.score - 0.5) < 0.075 and score.n == 400


def test_unreadable_replies_count_as_wrong() -> None:
    class Mumbler:
        name = "fake:mumble"

        def complete(self, chats, max_tokens):
            return ["I think maybe the first one", "[1, 1]"]

    ex = latent_examples(0, "cat", 2)
    samples = detection_samples(ex, np.random.default_rng(0))  # 4 samples: prompts of 2 and 2
    (score,) = score_classifier(Mumbler(), "detection", [("x", samples)], n_shown=2)
    assert score.answered == 0.5
    labels = [s.label for s in samples[2:]]
    assert score.score == sum(labels) / 4  # the second prompt's [1, 1] is right on its positives only


def test_embedding_auroc_and_control() -> None:
    examples = [latent_examples(i, kw, 8) for i, kw in enumerate(KEYWORDS[:3])]
    own = [(f"the word {kw}", ex) for kw, ex in zip(KEYWORDS, examples, strict=False)]
    other = [(f"the word {KEYWORDS[(i + 1) % 3]}", ex) for i, ex in enumerate(examples)]
    scores = score_embedding(bag_of_words, own + other)
    assert [s.score for s in scores] == [1.0] * 3 + [0.5] * 3  # all-zero cosines under the control: ties
    assert all(s.n == 16 for s in scores)


def test_control_needs_two_latents() -> None:
    with pytest.raises(ValueError, match="at least 2 latents"):
        shuffled(1, np.random.default_rng(0))


def test_minilm_embedding_scorer_finds_the_keyword() -> None:
    """The default embedder (all-MiniLM-L6-v2, the select extra): "the word cat" lies closer to contexts with
    "cat" than to the same filler without it, so the AUROC is near 1 (>= 0.9); unit-norm rows."""
    from saelab.evals.autointerp.run import default_embedder

    embed = default_embedder()
    vecs = embed(["a cat", "the river"])
    assert vecs.shape == (2, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    (score,) = score_embedding(embed, [("the word cat", latent_examples(0, "cat", 10))])
    assert score.score >= 0.9
