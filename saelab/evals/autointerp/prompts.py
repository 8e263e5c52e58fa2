"""The judge's prompts, in the formats of EleutherAI's delphi (Paulo et al. 2024, "Automatically Interpreting
Millions of Features in Large Language Models"), worded for saelab:

- explainer: a system turn of guidelines, three few-shot turns, then the latent's examples as lines
  `Example i: text` with the tokens that fire between `<<` and `>>`; the reply's last line is
  `[EXPLANATION]: ...`.
- detection: a system turn, three few-shot turns, then `Latent explanation: ...` and `Text examples:` with lines
  `Example i: text` (no highlighting); the reply is a Python list of 0/1, one per example.
- fuzzing: the same layout with `<<`/`>>` around highlighted tokens; 1 when every highlighted token fits the
  explanation.

Parsers read the replies back: `parse_explanation` (the text after `[EXPLANATION]:`) and `parse_labels` (the
first bracketed list of exactly n 0/1 values, None otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from saelab.evals.autointerp.judge import Chat

L, R = "<<", ">>"  # delphi's highlight delimiters

EXPLAINER_SYSTEM = """You study patterns in text for an interpretability project. You will read text examples in \
which some tokens are marked like <<this>>; a run of marked tokens is marked as a whole <<like this>>. The marks \
show where one hidden feature of a language model is active.

- Write one short explanation of what the marked tokens have in common, and of the context around them when it \
matters.
- Summarise the pattern; do not list the marked tokens one by one.
- Do not mention the << >> marks.
- Give one explanation, not a list of candidates.
- The last line of your reply must be the explanation, written as [EXPLANATION]: <your explanation>"""

EXPLAINER_SHOTS: tuple[tuple[str, str], ...] = (
    (
        "Example 1: the recipe calls for two<< cups>> of flour\n"
        "Example 2: she poured three<< litres>> of water into\n"
        "Example 3: weighs about five<< kilograms>> when full",
        "[EXPLANATION]: Units of measurement right after a number.",
    ),
    (
        "Example 1: def parse(self<<,>> text<<,>> strict=False):\n"
        "Example 2: return max(a<<,>> b)\n"
        "Example 3: open(path<<,>> mode<<,>> encoding='utf-8')",
        "[EXPLANATION]: Commas separating arguments inside the parentheses of a Python call or definition.",
    ),
    (
        "Example 1: I was<< not>> happy with it\n"
        "Example 2: this is<< never>> going to work\n"
        "Example 3: we could<<n't>> find the key",
        "[EXPLANATION]: Negation words and suffixes after a verb.",
    ),
)

_CLASSIFY_RULES = """- Consider that all, none or some of the examples may fit.
- Reply with a Python list with one entry per example, 1 or 0, in order, and nothing else."""

DETECTION_SYSTEM = f"""You are a careful linguistics researcher. You will be given the explanation of a feature of \
text, such as "male pronouns" or "text with negative sentiment", and then several text examples. Decide for each \
example whether the feature is present in it: 1 if it is, 0 if it is not.

{_CLASSIFY_RULES}"""

FUZZING_SYSTEM = f"""You are a careful linguistics researcher. You will be given the explanation of a feature of \
text, such as "male pronouns" or "text with negative sentiment", and then several text examples in which some \
tokens are marked like <<this>>. Some examples are marked wrongly. Decide for each example whether every marked \
token fits the explanation: 1 if all of them do, 0 if any does not.

{_CLASSIFY_RULES}"""

# Three shots of five examples each, answered "some", "none" and "all" (delphi's layout): a judge that copies a
# shot's reply still gives a list of the right length when it is shown five examples.
_SHOTS: tuple[tuple[str, tuple[tuple[str, str], ...], str], ...] = (
    (
        "Units of measurement right after a number.",
        (
            ("mix two", " cups", " of sugar with the butter"),
            ("the committee", " met", " on Tuesday to discuss"),
            ("a distance of ten", " kilometres", " along the river"),
            ("it weighs about five", " kilograms", " when it is full"),
            ("he opened", " the", " door and walked in"),
        ),
        "[1,0,1,1,0]",
    ),
    (
        "The keyword 'return' in Python functions.",
        (
            ("the weather", " stayed", " cold all week"),
            ("for item in items:", " print", "(item)"),
            ("she sang a song about", " the", " sea"),
            ("x = compute", "(", "value)"),
            ("import os,", " sys", " and re"),
        ),
        "[0,0,0,0,0]",
    ),
    (
        "Names of months.",
        (
            ("the festival is held every", " June", " in the"),
            ("signed the contract on 3", " March", " 1999"),
            ("sales fell sharply in", " December", " as"),
            ("the first snow came in", " November", " that year"),
            ("we will meet again in", " April", " or May"),
        ),
        "[1,1,1,1,1]",
    ),
)
DETECTION_SHOTS = tuple(
    (e, "\n".join(f"Example {i}: {a}{b}{c}" for i, (a, b, c) in enumerate(xs)), r) for e, xs, r in _SHOTS
)
FUZZING_SHOTS = tuple(
    (e, "\n".join(f"Example {i}: {a}{L}{b}{R}{c}" for i, (a, b, c) in enumerate(xs)), r) for e, xs, r in _SHOTS
)


def number_examples(texts: Sequence[str], start: int = 0) -> str:
    """`Example i: text` lines, numbered from `start`."""
    return "\n".join(f"Example {i}: {t}" for i, t in enumerate(texts, start))


def explainer_chat(examples: Sequence[str]) -> Chat:
    """The explainer's chat for a latent's highlighted top-activating contexts (numbered from 1, as delphi's)."""
    chat: Chat = [{"role": "system", "content": EXPLAINER_SYSTEM}]
    for user, reply in EXPLAINER_SHOTS:
        chat += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    chat.append({"role": "user", "content": number_examples(examples, 1)})
    return chat


def classifier_query(explanation: str, examples: Sequence[str]) -> str:
    """The user turn of a detection or fuzzing query: the explanation, then the examples numbered from 0."""
    return f"Latent explanation: {explanation}\n\nText examples:\n\n{number_examples(examples)}\n"


def classifier_chat(kind: str, explanation: str, examples: Sequence[str]) -> Chat:
    """The chat asking a judge to label `examples` under `explanation`: kind 'detection' or 'fuzzing'."""
    if kind not in ("detection", "fuzzing"):
        raise ValueError(f"unknown classifier {kind!r}; choose 'detection' or 'fuzzing'")
    system, shots = (DETECTION_SYSTEM, DETECTION_SHOTS) if kind == "detection" else (FUZZING_SYSTEM, FUZZING_SHOTS)
    chat: Chat = [{"role": "system", "content": system}]
    for shot_explanation, shot_examples, reply in shots:
        user = f"Latent explanation: {shot_explanation}\n\nText examples:\n\n{shot_examples}\n"
        chat += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    chat.append({"role": "user", "content": classifier_query(explanation, examples)})
    return chat


_EXPLANATION = re.compile(r"\[EXPLANATION\]:?\s*(.*)", re.DOTALL)
_LIST = re.compile(r"\[([^\[\]]*)\]")


def parse_explanation(reply: str) -> tuple[str, bool]:
    """(explanation, whether the reply had the `[EXPLANATION]:` tag). Without the tag, the reply's first
    non-empty line stands in for it (a small local judge often drops the tag); an empty reply gives ""."""
    m = _EXPLANATION.search(reply)
    if m:
        text = m.group(1).strip().splitlines()
        return (text[0].strip() if text else ""), True
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    return (lines[0] if lines else ""), False


def parse_labels(reply: str, n: int) -> list[int] | None:
    """The first bracketed list in `reply` when it holds exactly `n` values, each 0 or 1 (True/False read as
    1/0); None otherwise (delphi counts such a reply as no answer)."""
    m = _LIST.search(reply)
    if m is None:
        return None
    words = [w.strip().strip("'\"").lower() for w in m.group(1).split(",") if w.strip()]
    table = {"1": 1, "0": 0, "true": 1, "false": 0}
    if len(words) != n or any(w not in table for w in words):
        return None
    return [table[w] for w in words]


def highlight(tokens: Sequence[str], marked: Sequence[bool]) -> str:
    """The tokens joined, each run of marked tokens between `<<` and `>>` (delphi's highlighting)."""
    out: list[str] = []
    prev = False
    for tok, m in zip(tokens, marked, strict=True):
        if m and not prev:
            out.append(L)
        if prev and not m:
            out.append(R)
        out.append(tok)
        prev = bool(m)
    if prev:
        out.append(R)
    return "".join(out)
