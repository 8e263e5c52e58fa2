"""Scorers of explanations (delphi's detection and fuzzing, and an embedding scorer), and their math.

- detection: the judge labels plain contexts, half activating and half not, as fitting the explanation or not;
  the score is its accuracy.
- fuzzing: the judge labels highlighted contexts: activating ones with the tokens that fire marked (delphi's
  threshold: at least `threshold` x the context's largest activation), and non-activating ones with as many
  random tokens marked as an activating context has on average (rounded up); the score is its accuracy.
- embedding: cosine similarity of the explanation's MiniLM embedding to each context's; the score is the AUROC
  of activating against non-activating contexts.

Positives and negatives are balanced (as many of each), so chance is 0.5 for all three. A reply the parser
cannot read counts as a wrong answer for each of its examples (`answered` says how often that happened).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.evals.autointerp.examples import ExampleSet, LatentExamples
from saelab.evals.autointerp.judge import Chat, Judge
from saelab.evals.autointerp.prompts import classifier_chat, highlight, parse_labels

Classifier = Literal["detection", "fuzzing"]
Embedder = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, d) unit-norm embeddings


class Sample(NamedTuple):
    text: str  # as the judge sees it (highlighted for fuzzing)
    label: int  # 1: an activating context (detection) or a correctly highlighted one (fuzzing)


class Score(NamedTuple):
    """One scorer's result for one explanation of one latent."""

    score: float  # accuracy (detection, fuzzing) or AUROC (embedding); 0.5 is chance
    n: int  # samples scored, half of them positive
    answered: float  # fraction of samples the judge labelled in a readable reply (1.0 for embedding)


@jax.jit
def accuracy(pred: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(accuracy, answered) of predictions `pred` (n,) int (1, 0, or -1 for no answer) against `label` (n,)
    int; no answer counts as wrong."""
    return jnp.mean(pred == label), jnp.mean(pred >= 0)


@jax.jit
def auroc(scores: jax.Array, label: jax.Array) -> jax.Array:
    """Area under the ROC curve of `scores` (n,) for binary `label` (n,): the probability that a random
    positive scores above a random negative, ties counting one half (Mann-Whitney U / (n_pos n_neg))."""
    pos, neg = label > 0, label <= 0
    pairs = pos[:, None] & neg[None, :]  # (n, n) positive i against negative j
    wins = (scores[:, None] > scores[None, :]) + 0.5 * (scores[:, None] == scores[None, :])
    return jnp.sum(jnp.where(pairs, wins, 0.0)) / jnp.sum(pairs)


def balanced(ex: LatentExamples) -> tuple[ExampleSet, ExampleSet]:
    """(positives, negatives), as many of each: the test contexts and the non-activating ones, cut to the
    shorter."""
    n = min(len(ex.test.tokens), len(ex.negative.tokens))
    if n == 0:
        raise ValueError(
            f"latent {ex.latent} has no {'test' if not ex.test.tokens else 'non-activating'} contexts to score"
        )
    return ExampleSet(ex.test.tokens[:n], ex.test.acts[:n]), ExampleSet(ex.negative.tokens[:n], ex.negative.acts[:n])


def marked(acts: np.ndarray, threshold: float) -> np.ndarray:
    """The tokens delphi highlights in an activating context: activation >= threshold x its largest (and > 0)."""
    acts = np.asarray(acts, np.float32)
    return (acts >= threshold * acts.max(initial=0.0)) & (acts > 0)


def one_line(tokens: Sequence[str]) -> list[str]:
    """The tokens with newlines written as \\n, so a context stays on its `Example i:` line."""
    return [t.replace("\n", "\\n") for t in tokens]


def detection_samples(ex: LatentExamples, rng: np.random.Generator) -> list[Sample]:
    """Plain activating and non-activating contexts, balanced, shuffled."""
    pos, neg = balanced(ex)
    samples = [Sample("".join(one_line(t)), 1) for t in pos.tokens]
    samples += [Sample("".join(one_line(t)), 0) for t in neg.tokens]
    return [samples[i] for i in rng.permutation(len(samples))]


def fuzzing_samples(ex: LatentExamples, threshold: float, rng: np.random.Generator) -> list[Sample]:
    """Activating contexts highlighted where they fire (label 1) and non-activating ones with random tokens
    highlighted (label 0), balanced, shuffled."""
    pos, neg = balanced(ex)
    marks = [marked(a, threshold) for a in pos.acts]
    n_wrong = int(np.ceil(np.mean([m.sum() for m in marks])))
    samples = [Sample(highlight(one_line(t), m), 1) for t, m in zip(pos.tokens, marks, strict=True)]
    for toks in neg.tokens:
        m = np.zeros(len(toks), bool)
        m[rng.choice(len(toks), min(n_wrong, len(toks)), replace=False)] = True
        samples.append(Sample(highlight(one_line(toks), m), 0))
    return [samples[i] for i in rng.permutation(len(samples))]


def score_classifier(
    judge: Judge, kind: Classifier, items: Sequence[tuple[str, Sequence[Sample]]], n_shown: int = 5
) -> list[Score]:
    """Score each (explanation, samples) item with the judge, `n_shown` samples per prompt (delphi's
    n_examples_shown); all prompts of all items go to the judge in one call, so a local judge batches them."""
    if n_shown < 1:
        raise ValueError(f"n_shown must be >= 1, got {n_shown}")
    chats: list[Chat] = []
    spans: list[tuple[int, int]] = []  # (item, first sample) of each chat
    for i, (explanation, samples) in enumerate(items):
        for s in range(0, len(samples), n_shown):
            chats.append(classifier_chat(kind, explanation, [x.text for x in samples[s : s + n_shown]]))
            spans.append((i, s))
    replies = judge.complete(chats, max_tokens=4 * n_shown + 8) if chats else []
    if len(replies) != len(chats):
        raise ValueError(f"judge {judge.name} gave {len(replies)} replies to {len(chats)} chats; it must answer each")
    preds = [np.full(len(samples), -1, np.int32) for _, samples in items]
    for (i, s), reply in zip(spans, replies, strict=True):
        n = min(n_shown, len(items[i][1]) - s)
        labels = parse_labels(reply, n)
        if labels is not None:
            preds[i][s : s + n] = labels
    out = []
    for (_, samples), pred in zip(items, preds, strict=True):
        label = np.array([x.label for x in samples], np.int32)
        acc, answered = accuracy(jnp.asarray(pred), jnp.asarray(label))
        out.append(Score(float(acc), len(samples), float(answered)))
    return out


def score_embedding(embed: Embedder, items: Sequence[tuple[str, LatentExamples]]) -> list[Score]:
    """AUROC of the explanation-to-context cosine, activating against non-activating contexts, for each
    (explanation, examples) item; texts are embedded once for all items."""
    sets = [balanced(ex) for _, ex in items]
    texts = [["".join(t) for t in pos.tokens + neg.tokens] for pos, neg in sets]
    flat = [t for ts in texts for t in ts]
    ctx = np.asarray(embed(flat), np.float32)  # (n_contexts, d)
    expl = np.asarray(embed([e for e, _ in items]), np.float32)  # (n_items, d)
    out, start = [], 0
    for k, ((pos, neg), ts) in enumerate(zip(sets, texts, strict=True)):
        cos = ctx[start : start + len(ts)] @ expl[k]  # (n,) unit vectors: dot is cosine
        label = np.r_[np.ones(len(pos.tokens), np.int32), np.zeros(len(neg.tokens), np.int32)]
        out.append(Score(float(auroc(jnp.asarray(cos), jnp.asarray(label))), len(ts), 1.0))
        start += len(ts)
    return out
