"""Tasks: same-length pairs, single-token answers, determinism, greater-than scoring layout, JSONL tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saelab.circuits.tasks import build_task, prefix_ids, single_tokens, subset


def _enc(tok, s):
    return tok.encode(s, add_special_tokens=False).ids


@pytest.mark.parametrize("name", ["ioi", "greater-than", "docstring"])
def test_pairs_align_and_are_deterministic(tokenizer, name: str) -> None:
    pre = prefix_ids(tokenizer)
    t = build_task(name, tokenizer, 12, 3, prefix=pre)
    again = build_task(name, tokenizer, 12, 3, prefix=pre)
    assert np.array_equal(t.pos, again.pos) and np.array_equal(t.neg, again.neg)
    assert not np.array_equal(t.pos, build_task(name, tokenizer, 12, 4, prefix=pre).pos)
    assert t.pos.shape == t.neg.shape == t.mask.shape == (12, t.pos.shape[1])
    for i, (p, q) in enumerate(t.texts):  # each pair tokenises to the same length, and as stored
        ids_p, ids_q = pre + _enc(tokenizer, p), pre + _enc(tokenizer, q)
        assert len(ids_p) == len(ids_q) == t.mask[i].sum() - t.scoring_tokens
        assert t.pos[i, t.mask[i] == 1][: len(ids_p)].tolist() == ids_p
        assert (t.pos[i] != t.neg[i]).any()
    assert (t.mask[:, -1] == 1).all()  # left padding: every prompt ends at the last column


def test_ioi_answers_are_single_token_names(tokenizer) -> None:
    t = build_task("ioi", tokenizer, 20, 0)
    for (p, q), a, w in zip(t.texts, t.targets["answer"], t.targets["wrong"], strict=True):
        io, s = tokenizer.decode([int(a)]), tokenizer.decode([int(w)])
        assert io.startswith(" ") and len(_enc(tokenizer, io)) == 1
        assert p.count(io.strip()) == 1 and p.count(s.strip()) == 2  # IO once, S twice
        assert io.strip() not in q and q.count(s.strip()) == 1  # the negative names no one twice
    assert len(single_tokens(tokenizer, ["Mary", "Paula"])) == 1  # " Paula" is two tokens


def test_greater_than_appends_the_tens_digit(tokenizer) -> None:
    t = build_task("greater-than", tokenizer, 6, 0)
    assert t.metric == "later_digits" and t.scoring_tokens == 1
    for i, (p, q) in enumerate(t.texts):
        yy = int(p.split(" to ")[0][-2:])
        assert (int(t.targets["tens"][i]), int(t.targets["units"][i])) == divmod(yy, 10)
        assert tokenizer.decode([int(t.pos[i, -1])]) == str(yy // 10) == tokenizer.decode([int(t.neg[i, -1])])
        assert q.split(" to ")[0].endswith("01")


def test_docstring_answer_is_the_next_argument(tokenizer) -> None:
    t = build_task("docstring", tokenizer, 5, 0, docstring_args=5)
    for (p, q), a, w in zip(t.texts, t.targets["answer"], t.targets["wrong"], strict=True):
        args = p.split("(self, ")[1].split(")")[0].split(", ")
        fresh = q.split("(self, ")[1].split(")")[0].split(", ")
        assert len(args) == 5 and p.count(":param") == 5 and p.endswith(":param")
        assert tokenizer.decode([int(a)]) == " " + args[4] and tokenizer.decode([int(w)]) == " " + fresh[4]
        assert not set(args) & set(fresh)


def test_jsonl_task_and_errors(tokenizer, tmp_path) -> None:
    rec = {"positive": "The cat sat on the", "negative": "The dog sat on the", "answer": " mat"}
    rec["wrong"] = " rug"
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(json.dumps(rec) for _ in range(3)))
    t = build_task(f"jsonl:{f}", tokenizer, 2, 0)
    assert t.n == 2 and t.metric == "logit_diff" and t.targets["answer"][0] == _enc(tokenizer, " mat")[0]
    f.write_text(json.dumps(rec | {"negative": "The big dog sat on the"}))
    with pytest.raises(ValueError, match="equal lengths"):
        build_task(f"jsonl:{f}", tokenizer, 1, 0)
    f.write_text(json.dumps(rec | {"answer": " mattress pad"}))
    with pytest.raises(ValueError, match="one token"):
        build_task(f"jsonl:{f}", tokenizer, 1, 0)
    with pytest.raises(ValueError, match="unknown task"):
        build_task("nope", tokenizer, 1, 0)


def test_subset_trims_padding(tokenizer) -> None:
    t = build_task("ioi", tokenizer, 10, 0)
    s = subset(t, [0, 1])
    assert s.n == 2 and s.mask.any(axis=0).all() and s.texts == t.texts[:2]
