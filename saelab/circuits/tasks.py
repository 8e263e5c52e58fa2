"""Circuit tasks: paired positive / negative prompts with answer tokens and a metric (O'Neill & Bui,
arXiv 2405.12522, section 3; docs/methods.md, "Circuits").

A positive prompt is one the model can complete; its paired negative changes as few tokens as possible so
that the answer is no longer determined. Both prompts of a pair have the same token length (checked), so
they share padding and positions and a head's activation can be patched from one into the other.

- IOI (Wang et al. 2022): "Then, A and B went to the store. B gave a drink to" -> " A", ABBA and BABA
  orders. Negative: the two names of the first clause replaced by fresh names C and D (Wang et al.'s ABC
  corruption), so no name is repeated. Metric: logit(A) - logit(B).
- Greater-than (Hanna et al. 2023): "The war lasted from the year 1732 to the year 17" -> a year > 32.
  Negative: start year "1701". For a digit-by-digit tokenizer the answer takes two tokens, so the positive
  gets the start's tens digit appended ("... to the year 173"): by causality the logits at the second-to-last
  position are the tens-digit distribution and the last ones the units digit given that tens digit, so one
  forward gives P(year > start) exactly as two passes would. Tokenizers with two-digit tokens (GPT-2) are
  scored on the single next token.
- Docstring (Heimersheim & Janiak 2023): a `def` with `self` and k arguments and a docstring listing
  `:param name:` for the first k-1 of them; the answer is the k-th name. Negative: every `def` argument
  renamed at random (docstring lines kept); the "wrong" token is the negative's k-th argument.
- A user task: JSONL of {"positive", "negative", "answer", "wrong"}, scored by logit(answer) - logit(wrong).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from tokenizers import Tokenizer

BUILTIN = ("ioi", "greater-than", "docstring")
IoiNegative = Literal["abc", "paper"]


class TaskData(NamedTuple):
    """Tokenised prompt pairs, left-padded to one width. A pair shares `mask`, hence positions."""

    name: str
    pos: np.ndarray  # (n, seq) int32 positive prompts
    neg: np.ndarray  # (n, seq) int32 paired negatives
    mask: np.ndarray  # (n, seq) int32, 1 = real token
    metric: str  # a name in saelab.circuits.metric.METRICS
    targets: dict[str, np.ndarray]  # per-pair arrays the metric reads, leading axis n
    scoring_tokens: int  # trailing tokens appended only for scoring (greater-than's tens digit)
    texts: tuple[tuple[str, str], ...]  # (positive, negative) text per pair

    @property
    def n(self) -> int:
        return int(self.pos.shape[0])


def build_task(
    name: str,
    tokenizer: Tokenizer,
    n: int,
    seed: int | Sequence[int],
    *,
    prefix: Sequence[int] = (),
    docstring_args: int = 5,
    ioi_negative: IoiNegative = "abc",
) -> TaskData:
    """`n` pairs of a built-in task ("ioi", "greater-than", "docstring") or of a JSONL file ("jsonl:PATH"
    or a path ending in .jsonl). Deterministic given `seed` (an int or a tuple naming a stream, as numpy's
    `default_rng` takes); `prefix` token ids start every prompt. `ioi_negative`: "abc" replaces both names of
    IOI's first clause, "paper" only the subject's first mention (O'Neill & Bui), the IO name kept."""
    rng = np.random.default_rng(seed)
    if name.startswith("jsonl:") or name.endswith(".jsonl"):
        return _jsonl(Path(name.removeprefix("jsonl:")), tokenizer, n, rng, list(prefix))
    makers: dict[str, Callable[..., TaskData]] = {
        "ioi": _ioi,
        "greater-than": _greater_than,
        "docstring": _docstring,
    }
    if name not in makers:
        raise ValueError(f"unknown task {name!r}; choose from {list(BUILTIN)} or jsonl:PATH")
    if n < 1:
        raise ValueError(f"need at least one prompt pair, got n={n}")
    if name == "docstring":
        if docstring_args < 2:
            raise ValueError(f"docstring needs at least 2 arguments, got {docstring_args}")
        return _docstring(tokenizer, n, rng, list(prefix), docstring_args)
    if name == "ioi":
        return _ioi(tokenizer, n, rng, list(prefix), ioi_negative)
    return makers[name](tokenizer, n, rng, list(prefix))


def subset(task: TaskData, idx: Sequence[int] | np.ndarray) -> TaskData:
    """The pairs `idx` of a task, trimmed of columns that are padding in every kept pair."""
    idx = np.asarray(idx)
    mask = task.mask[idx]
    start = int(np.argmax(mask.any(axis=0)))
    return task._replace(
        pos=task.pos[idx, start:],
        neg=task.neg[idx, start:],
        mask=mask[:, start:],
        targets={k: v[idx] for k, v in task.targets.items()},
        texts=tuple(task.texts[i] for i in idx),
    )


def prefix_ids(tokenizer: Tokenizer) -> list[int]:
    """The end-of-text token as a document start, when the tokenizer has one (it steadies weak templates)."""
    for t in ("<|endoftext|>", "</s>", "<eos>"):
        i = tokenizer.token_to_id(t)
        if i is not None:
            return [i]
    return []


def single_tokens(tokenizer: Tokenizer, words: Sequence[str], space: bool = True) -> list[str]:
    """The words (with a leading space when `space`) that the tokenizer keeps as one token, in order."""
    return [w for w in dict.fromkeys(words) if len(_enc(tokenizer, (" " if space else "") + w)) == 1]


_NAMES = (
    "Mary John Richard Nicole Adam James Michael David William Robert Thomas Daniel Paul Mark George Edward "
    "Steven Kevin Brian Jason Ryan Eric Jacob Gary Scott Frank Peter Jack Henry Sarah Laura Emma Lisa Anna "
    "Kate Rachel Alice Amy Emily Helen Susan Linda Karen Nancy Betty Grace Julia Jessica Rose Max Sam Tom "
    "Ben Dan Joe Alex Chris Matt Mike Tim Luke Kelly Jane Anne Ruth Carl Martin Sean Victoria Andrew Maria "
    "Elizabeth Jennifer Lucy Claire Oliver Charlie Harry Joseph Simon Ian Bruce Roger Patrick Bob Jim Jeff"
).split()
_PLACES = "store garden school park hospital station office restaurant house market beach library".split()
_OBJECTS = "drink ring book kiss basketball bone computer necklace bag cake snack flower".split()
_IOI_TEMPLATES = (
    "Then, {0} and {1} went to the {place}. {s} gave a {obj} to",
    "When {0} and {1} went to the {place}, {s} gave a {obj} to",
    "After {0} and {1} went to the {place}, {s} gave a {obj} to",
    "Then, {0} and {1} had a long argument. Afterwards {s} said to",
    "While {0} and {1} were working at the {place}, {s} gave a {obj} to",
    "Friends {0} and {1} found a {obj} at the {place}. {s} gave it to",
)


def _ioi(
    tok: Tokenizer, n: int, rng: np.random.Generator, prefix: list[int], negative: IoiNegative = "abc"
) -> TaskData:
    if negative not in ("abc", "paper"):
        raise ValueError(f"ioi_negative must be 'abc' or 'paper', got {negative!r}")
    names = single_tokens(tok, _NAMES)
    if len(names) < 4:
        raise ValueError("the tokenizer keeps fewer than 4 of the IOI names as single tokens")
    rows = []
    for i in range(n):
        tpl = _IOI_TEMPLATES[rng.integers(len(_IOI_TEMPLATES))]
        a, b, c, d = rng.choice(names, 4, replace=False)
        first = (b, a) if i % 2 else (a, b)  # BABA on odd pairs, ABBA on even ones
        kw = {"place": rng.choice(_PLACES), "obj": rng.choice(_OBJECTS), "s": b}
        fresh = (c, d) if negative == "abc" else tuple(c if x == b else x for x in first)
        rows.append((tpl.format(*first, **kw), tpl.format(*fresh, **kw), " " + a, " " + b))
    return _pairs_logit_diff("ioi", tok, rows, prefix)


_NOUNS = (
    "war expedition siege drought famine reign occupation strike rebellion campaign dynasty journey "
    "project trial voyage marriage plague invasion tour study treaty crisis boom program"
).split()


def _greater_than(tok: Tokenizer, n: int, rng: np.random.Generator, prefix: list[int]) -> TaskData:
    digits = [_one(tok, str(d)) for d in range(10)]
    digit_level = all(d is not None for d in digits) and _enc(tok, " 1732")[-2:] == [digits[3], digits[2]]
    pairs = [_one(tok, f"{v:02d}") for v in range(100)]
    if not digit_level and any(p is None for p in pairs):
        raise ValueError("greater-than needs a tokenizer with single digits or all two-digit tokens 00..99")
    pos_ids, neg_ids, yys, texts = [], [], [], []
    for _ in range(n):
        century, yy = int(rng.integers(11, 18)), int(rng.integers(11, 90))
        noun = rng.choice(_NOUNS)
        pos = f"The {noun} lasted from the year {century}{yy:02d} to the year {century}"
        neg = f"The {noun} lasted from the year {century}01 to the year {century}"
        p, q = prefix + _enc(tok, pos), prefix + _enc(tok, neg)
        if digit_level:
            p, q = p + [digits[yy // 10]], q + [digits[yy // 10]]
        pos_ids.append(p), neg_ids.append(q), yys.append(yy), texts.append((pos, neg))
    yy = np.asarray(yys, np.int32)
    if digit_level:
        digit_ids = np.tile(np.asarray(digits, np.int32), (n, 1))
        targets = {"digits": digit_ids, "tens": yy // 10, "units": yy % 10}
        metric, extra = "later_digits", 1
    else:
        targets = {"pairs": np.tile(np.asarray(pairs, np.int32), (n, 1)), "yy": yy}
        metric, extra = "later_pairs", 0
    pos, neg, mask = _pad_pairs(pos_ids, neg_ids, texts)
    return TaskData("greater-than", pos, neg, mask, metric, targets, extra, tuple(texts))


_ARGS = (
    "src dst mode size flag name path data file key value count index item items line text url user host "
    "port page node parent child root model config state action event target source result output input "
    "buffer shape label level limit offset order query request response scope score seed step stream table "
    "token type unit width height color image length filter format group handle header block batch layer "
    "weight alpha beta gamma delta axis col row cell field frame graph kind log msg num obj pos rate ref "
    "sep tag task time val var"
).split()
_FUNCS = "load run check update get process build parse render send fetch merge apply create compute".split()
_WORDS = (
    "the new old first last main default current given local remote raw final full empty single extra "
    "list of to for in number size name value set table path object option"
).split()


def _docstring(tok: Tokenizer, n: int, rng: np.random.Generator, prefix: list[int], k: int) -> TaskData:
    names = single_tokens(tok, _ARGS)
    if len(names) < 2 * k:
        raise ValueError(f"the tokenizer keeps fewer than {2 * k} argument names as single tokens")
    rows = []
    for _ in range(n):
        chosen = rng.choice(names, 2 * k, replace=False)
        args, fresh = list(chosen[:k]), list(chosen[k:])
        fn = rng.choice(_FUNCS)
        doc = "".join(f"\n    :param {a}: {' '.join(rng.choice(_WORDS, 2))}" for a in args[: k - 1])
        head = f'def {fn}(self, {{}}):\n    """{" ".join(rng.choice(_WORDS, 3)).capitalize()}.\n'
        tail = f"{doc}\n    :param"
        rows.append(
            (
                head.format(", ".join(args)) + tail,
                head.format(", ".join(fresh)) + tail,
                " " + args[k - 1],
                " " + fresh[k - 1],
            )
        )
    return _pairs_logit_diff("docstring", tok, rows, prefix)


def _jsonl(path: Path, tok: Tokenizer, n: int, rng: np.random.Generator, prefix: list[int]) -> TaskData:
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist")
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    need = {"positive", "negative", "answer", "wrong"}
    for i, r in enumerate(recs):
        if not need <= set(r):
            raise ValueError(f"{path}:{i + 1} lacks {sorted(need - set(r))}; records need {sorted(need)}")
    if n > len(recs):
        raise ValueError(f"{path} has {len(recs)} records, fewer than the {n} pairs asked for")
    pick = rng.permutation(len(recs))[:n]
    rows = [(recs[i]["positive"], recs[i]["negative"], recs[i]["answer"], recs[i]["wrong"]) for i in pick]
    return _pairs_logit_diff(path.stem, tok, rows, prefix)


def _pairs_logit_diff(
    name: str,
    tok: Tokenizer,
    rows: list[tuple[str, str, str | int, str | int]],
    prefix: list[int],
) -> TaskData:
    pos_ids = [prefix + _enc(tok, r[0]) for r in rows]
    neg_ids = [prefix + _enc(tok, r[1]) for r in rows]
    texts = [(r[0], r[1]) for r in rows]
    answer = np.asarray([_answer_id(tok, r[2]) for r in rows], np.int32)
    wrong = np.asarray([_answer_id(tok, r[3]) for r in rows], np.int32)
    pos, neg, mask = _pad_pairs(pos_ids, neg_ids, texts)
    return TaskData(name, pos, neg, mask, "logit_diff", {"answer": answer, "wrong": wrong}, 0, tuple(texts))


def _pad_pairs(
    pos: list[list[int]],
    neg: list[list[int]],
    texts: list[tuple[str, str]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for p, q, t in zip(pos, neg, texts, strict=True):
        if len(p) != len(q):
            raise ValueError(f"pair of {len(p)} and {len(q)} tokens; patching needs equal lengths: {t}")
    width = max(len(p) for p in pos)
    out = np.zeros((3, len(pos), width), np.int32)  # positives, negatives, mask
    for i, (p, q) in enumerate(zip(pos, neg, strict=True)):
        out[0, i, width - len(p) :], out[1, i, width - len(q) :], out[2, i, width - len(p) :] = p, q, 1
    return out[0], out[1], out[2]


def _answer_id(tok: Tokenizer, x: str | int) -> int:
    if isinstance(x, int):
        return x
    ids = _enc(tok, x)
    if len(ids) != 1:
        raise ValueError(f"answer {x!r} is {len(ids)} tokens for this tokenizer; answers must be one token")
    return ids[0]


def _one(tok: Tokenizer, s: str) -> int | None:
    ids = _enc(tok, s)
    return ids[0] if len(ids) == 1 else None


def _enc(tok: Tokenizer, s: str) -> list[int]:
    return tok.encode(s, add_special_tokens=False).ids
