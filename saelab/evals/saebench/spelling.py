"""The first-letter spelling task of SAEBench's absorption eval (sae-bench 0.6 `evals/absorption/vocab.py`,
`prompting.py`, `probing.py`): the alphabetic vocabulary, ten-shot prompts `"{word} has the first letter: X"`, and
the hook's activations at the word token.

A prompt is `"\\n" + "\\n".join(ICL examples) + "\\n{word} has the first letter:"`, each example followed by its
answer (" C" for "cat"); the ten examples are drawn (without the word itself) from the same vocabulary split.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

LETTERS = string.ascii_lowercase
TEMPLATE = "{word} has the first letter:"
WORD_POSITION = -6  # the word token: five tokens (" has the first letter:") follow it
ICL_EXAMPLES = 10


class Prompt(NamedTuple):
    text: str
    word: str
    letter: int  # 0..25, the answer's class


def alpha_vocab(tokenizer) -> list[str]:
    """Every vocabulary token whose text (one leading space allowed) is ASCII letters only, as sae-bench's
    `get_alpha_tokens` (a `tokenizers.Tokenizer`; text by its decoder, as `convert_tokens_to_string`), in token-id
    order: sae-bench takes the vocabulary dict's order, which its hash map leaves unspecified."""
    vocab = tokenizer.get_vocab()
    words = []
    for tok in sorted(vocab, key=vocab.get):
        text = tokenizer.decoder.decode([tok]) if tokenizer.decoder is not None else tok
        core = text[1:] if text.startswith(" ") else text
        if core and all(c in string.ascii_letters for c in core):
            words.append(text)
    return words


def answer(word: str) -> str:
    """ " C" for "cat" (first alphabetic character, capitalised, after a space)."""
    return " " + next(c for c in word.strip() if c.isalpha()).upper()


def icl_prompt(word: str, examples: Sequence[str], rng: random.Random) -> Prompt:
    """A ten-shot prompt for `word`, examples drawn by `rng.sample` until none is the word (sae-bench's
    `create_icl_prompt` with prepend_separator_to_first_example)."""
    for _ in range(1000):
        shots = rng.sample(list(examples), ICL_EXAMPLES)
        if word not in shots:
            break
    else:
        raise ValueError(f"could not draw ten examples without {word!r}; the vocabulary is too small")
    body = "\n".join(TEMPLATE.format(word=ex) + answer(ex) for ex in shots)
    text = "\n" + body + "\n" + TEMPLATE.format(word=word)
    return Prompt(text, word, LETTERS.index(answer(word).strip().lower()))


def split_prompts(vocab: list[str], rng: random.Random, train_fraction: float = 0.8):
    """(train prompts, test prompts): the vocabulary shuffled and split 80/20, each word's examples drawn from
    its own split (sae-bench's `create_dataset_probe_training`, one prompt per token)."""
    shuffled = rng.sample(vocab, len(vocab))
    cut = int(len(shuffled) * train_fraction)
    train, test = shuffled[:cut], shuffled[cut:]
    return [icl_prompt(w, train, rng) for w in train], [icl_prompt(w, test, rng) for w in test]


def word_activations(ctx, prompts: list[Prompt], what: str) -> np.ndarray:
    """The hook's activations at the word token of each prompt (BOS first), (n, d_in) float32."""
    model = ctx.model
    ids = [e.ids for e in model.tokenizer.encode_batch([p.text for p in prompts], add_special_tokens=False)]
    bos = [model.bos_id] if model.bos_id is not None else []
    return ctx.prompt_acts([bos + x for x in ids], WORD_POSITION, what)
