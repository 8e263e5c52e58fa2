"""Explanations of latents from their top-activating contexts (delphi's default explainer: highlighted
examples in, one `[EXPLANATION]:` line out), and the shuffled-explanation control."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from saelab.evals.autointerp.examples import LatentExamples
from saelab.evals.autointerp.judge import Judge
from saelab.evals.autointerp.prompts import explainer_chat, highlight, parse_explanation
from saelab.evals.autointerp.scorers import marked, one_line

EXPLANATION_TOKENS = 48  # room for one line; a longer reply is cut


class Explained(NamedTuple):
    text: str  # the explanation ("" when the judge gave nothing)
    tagged: bool  # the reply had the [EXPLANATION]: tag (else its first line stands in)
    reply: str  # the judge's whole reply


def explainer_examples(ex: LatentExamples, threshold: float = 0.3) -> list[str]:
    """The latent's top contexts, the tokens at or above `threshold` x each context's largest activation
    highlighted, as the explainer sees them (newlines written as \\n, so each context is one line)."""
    return [
        highlight(one_line(toks), marked(acts, threshold))
        for toks, acts in zip(ex.train.tokens, ex.train.acts, strict=True)
    ]


def explain(judge: Judge, examples: Sequence[LatentExamples], threshold: float = 0.3) -> list[Explained]:
    """One explanation per latent, all asked of the judge in one call (a local judge batches them)."""
    for ex in examples:
        if not ex.train.tokens:
            raise ValueError(f"latent {ex.latent} has no activating contexts in the scanned tokens; scan more tokens")
    chats = [explainer_chat(explainer_examples(ex, threshold)) for ex in examples]
    replies = judge.complete(chats, max_tokens=EXPLANATION_TOKENS)
    return [Explained(*parse_explanation(r), r) for r in replies]


def shuffled(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random derangement of range(n): entry i is the latent whose explanation latent i gets as its control
    (never its own). Needs n >= 2."""
    if n < 2:
        raise ValueError(f"the shuffled-explanation control needs at least 2 latents, got {n}")
    order = rng.permutation(n)
    out = np.empty(n, np.int64)
    out[order] = np.roll(order, -1)  # each latent in the cycle takes the next one's explanation
    return out
