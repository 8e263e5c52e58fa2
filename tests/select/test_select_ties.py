"""Tied scores are broken by a seeded hash of each record, never by file order: shuffling the pool file leaves
every bench metric and every `saelab select` rank unchanged, on a CLINC-style pool full of ties (BM25 zeros,
records made of words the tiny model's tokenizer does not know, so with identical codes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from saelab.select import SelectConfig, run
from saelab.select.baselines import score_bm25
from saelab.select.bench import BenchConfig, precision_recall, run_bench
from saelab.select.similarity import rank_order, tie_keys

TEMPLATES = {
    "timer": ("set a timer for {} minutes", "utility"),
    "weather": ("what is the weather {}", "utility"),
    "music": ("play some music {}", "fun"),
    "travel": ("book flight to {}", "travel"),
}
FILLERS = ["five", "today", "please", "paris", "xyzzy", "quux", "blorp", "zork"]
TIED = ["hello there", "thanks a lot", "zork grue"]  # the same texts under every intent


def _write_clinc(root: Path, shuffle_seed: int | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    train = []
    for intent, (tpl, domain) in TEMPLATES.items():
        train += [{"text": tpl.format(w), "intent": intent, "domain": domain} for w in FILLERS]
        train += [{"text": t, "intent": intent, "domain": domain} for t in TIED]
    if shuffle_seed is not None:
        train = [train[i] for i in np.random.default_rng(shuffle_seed).permutation(len(train))]
    val = [{"text": tpl.format(w), "intent": i, "domain": d} for i, (tpl, d) in TEMPLATES.items() for w in FILLERS[:4]]
    for name, recs in (("train", train), ("val", val)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return root


def test_rank_order_breaks_ties_by_key_not_position():
    scores = np.array([1.0, 0.0, 0.0, 2.0, 0.0])
    keys = np.array([9, 30, 10, 5, 20], np.uint64)
    np.testing.assert_array_equal(rank_order(scores, keys), [3, 0, 2, 4, 1])
    perm = np.array([4, 2, 0, 3, 1])  # the same records in another file order keep their relative ranks
    np.testing.assert_array_equal(perm[rank_order(scores[perm], keys[perm])], [3, 0, 2, 4, 1])
    assert (tie_keys([b"a", b"b", b"a"], 0)[[0, 2]] == tie_keys([b"a"], 0)[0]).all()
    assert tie_keys([b"a"], 0)[0] != tie_keys([b"a"], 1)[0]


def test_bench_metrics_do_not_depend_on_pool_order(tmp_path, tiny_model, tiny_sae):
    tables = []
    for name, shuffle in (("sorted", None), ("shuffled", 3)):
        cfg = BenchConfig(
            data=_write_clinc(tmp_path / name, shuffle),
            methods=["jaccard", "hidden", "bm25", "dsir", "random", "jaccard+bm25"],
            saes=[tiny_sae],
            n_intent=2,
            n_domain=3,
            ratios=[0.05, 0.25],
            out=tmp_path / name / "out",
            cache_dir=None,
            progress=False,
            seed=7,
        )
        tables.append({(r.method, r.level): (r.precision, r.recall, r.ap) for r in run_bench(cfg, model=tiny_model)})
    assert len(tables[0]) == 12
    for k, v in tables[0].items():
        assert tables[1][k] == v, k

    # the check has teeth: with the old stable argsort, BM25's ties make the two file orders disagree
    differs = []
    for name in ("sorted", "shuffled"):
        recs = [json.loads(x) for x in (tmp_path / name / "train.jsonl").read_text().splitlines()]
        texts = [r["text"] for r in recs]
        s = score_bm25(["hello there friend"], lambda texts=texts: iter([texts]))
        relevant = np.array([r["intent"] == "timer" for r in recs])
        stable = np.argsort(-s, kind="stable")[:1]
        differs.append(relevant[stable].mean())
        keys = tie_keys([json.dumps(r, sort_keys=True).encode() for r in recs], 7)
        differs.append(precision_recall(s, relevant, 1 / len(s), keys)[0])
    assert (s == 0).sum() > len(s) // 2
    assert differs[0] != differs[2] and differs[1] == differs[3]


def test_select_ranks_do_not_depend_on_pool_order(tmp_path):
    root = _write_clinc(tmp_path / "data")
    target = tmp_path / "target.jsonl"
    target.write_text(json.dumps({"text": "hello there"}) + "\n")
    lines = (root / "train.jsonl").read_bytes().splitlines(keepends=True)
    rev = tmp_path / "reversed.jsonl"
    rev.write_bytes(b"".join(lines[::-1]))
    ranks = []
    for pool in (root / "train.jsonl", rev):
        out = tmp_path / pool.stem
        run(SelectConfig(pool=pool, target=target, method="bm25", ratio=0.1, out=out, progress=False, seed=1))
        rows = [x.split("\t") for x in (out / "scores.tsv").read_text().splitlines()[1:]]
        pool_lines = pool.read_bytes().splitlines()
        ranks.append({pool_lines[int(r[0]) - 1]: int(r[2]) for r in rows})
        assert sorted(ranks[-1].values()) == list(range(1, len(lines) + 1))
    assert ranks[0] == ranks[1]
