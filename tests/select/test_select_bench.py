"""Bench metrics by hand, and a small bench run on a synthetic labelled pool (text methods only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saelab.select.bench import BenchConfig, average_precision, precision_recall, run_bench


def test_precision_recall_and_ap_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    relevant = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1], bool)
    assert precision_recall(scores, relevant, 0.2) == (0.5, 1 / 3)  # top 2: one hit of three relevant
    assert precision_recall(scores, relevant, 0.3) == (2 / 3, 2 / 3)
    # hits at ranks 1, 3, 10: AP = (1/1 + 2/3 + 3/10) / 3
    assert average_precision(scores, relevant) == pytest.approx((1 + 2 / 3 + 0.3) / 3)


def _write_clinc_style(root):
    """A CLINC-style folder: {train,val,test}.jsonl of text, intent and domain."""
    topics = {
        "timer": ("set a timer for {} minutes", "utility"),
        "weather": ("what is the weather in {}", "utility"),
        "music": ("play {} songs", "fun"),
        "jokes": ("tell me a {} joke", "fun"),
    }
    words = ["five", "paris", "rock", "funny", "ten", "london", "jazz", "short", "two", "rome"]
    for split, ws in (("train", words), ("val", words[:5]), ("test", words[5:])):
        with (root / f"{split}.jsonl").open("w") as f:
            for intent, (tpl, domain) in topics.items():
                for w in ws:
                    f.write(json.dumps({"text": tpl.format(w), "intent": intent, "domain": domain}) + "\n")


def test_bench_on_a_synthetic_pool(tmp_path):
    _write_clinc_style(tmp_path)
    cfg = BenchConfig(
        data=tmp_path,
        methods=["bm25", "random"],
        n_intent=3,
        n_domain=3,
        ratios=[0.1, 0.25],
        out=tmp_path / "out",
        progress=False,
        cache_dir=None,
    )
    rows = {(r.method, r.level): r for r in run_bench(cfg)}
    assert set(rows) == {(m, lv) for m in ("bm25", "random") for lv in ("intent", "domain")}
    assert rows["bm25", "intent"].precision[0.25] == 1.0  # template words give each intent away
    assert rows["bm25", "intent"].ap > rows["random", "intent"].ap
    assert (tmp_path / "out" / "bench.md").read_text().count("\n") == 6


def test_bench_embeds_each_target_set_once_per_embedding():
    from saelab.select.bench import _memo

    calls = []

    def emb(texts):
        calls.append(list(texts))
        return np.ones((len(texts), 2))

    memo: dict = {}
    a, fields = _memo((emb, {"kind": "sae", "hook": "h"}), memo)
    b, _ = _memo((emb, {"kind": "sae", "hook": "h"}), memo)  # another method on the same embedding
    c, _ = _memo((emb, {"kind": "hidden", "hook": "h"}), memo)
    a(["x", "y"]), b(["x", "y"]), c(["x", "y"]), a(["z"])
    assert calls == [["x", "y"], ["x", "y"], ["z"]] and fields == {"kind": "sae", "hook": "h"}
    big = [str(i) for i in range(300)]  # pool chunks are never kept
    a(big), a(big)
    assert len(calls) == 5


def test_select_bench_cli_on_any_clinc_style_folder(tmp_path, capsys):
    """`saelab select bench --data DIR --out DIR` prints one row per method and level, the method's name first."""
    from saelab.cli import main

    data = tmp_path / "data"
    data.mkdir()
    _write_clinc_style(data)
    out = tmp_path / "out"
    argv = ["select", "bench", "--data", str(data), "--out", str(out), "--methods", "bm25,dsir,random"]
    assert main([*argv, "--n-intent", "3", "--n-domain", "3", "--no-progress", "--cache-dir", str(tmp_path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["bm25", "bm25", "dsir", "dsir", "random", "random"]
    assert [r.split("|")[3].strip() for r in rows[1:3]] == ["intent", "domain"]
    assert (out / "bench.json").is_file() and (out / "bench.md").is_file()
