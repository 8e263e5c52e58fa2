"""`run`: the selected JSONL is the pool's records byte for byte, scores and summary beside it; the cache is
reused and keyed by the data; bad pools fail with the line; the CLI reports errors as `saelab: error:`."""

from __future__ import annotations

import json

import pytest

from saelab.cli import main
from saelab.select import SelectConfig, run
from tests.peer_modules import needed


def _check_selection(pool, out, n_selected):
    pool_lines = pool.read_bytes().splitlines(keepends=True)
    selected = (out / "selected.jsonl").read_bytes().splitlines(keepends=True)
    rows = [line.split("\t") for line in (out / "scores.tsv").read_text().splitlines()[1:]]
    assert len(rows) == len(pool_lines) and len(selected) == n_selected
    chosen = [int(r[0]) for r in rows if r[3] == "1"]
    expected = [pool_lines[i - 1] if pool_lines[i - 1].endswith(b"\n") else pool_lines[i - 1] + b"\n" for i in chosen]
    assert selected == expected  # same bytes (CRLF, spacing, \\u escapes kept), pool order
    ranks = sorted(int(r[2]) for r in rows)
    assert ranks == list(range(1, len(rows) + 1))
    assert all(int(r[2]) <= n_selected for r in rows if r[3] == "1")


@pytest.mark.parametrize("method", ["jaccard", "hidden", "bm25", "dsir", "random"])
def test_selection_is_byte_identical(tmp_path, tiny_model, tiny_sae, pool_and_target, method):
    if method in ("bm25", "dsir"):  # the `select` extra
        needed({"bm25": "bm25s", "dsir": "sklearn"}[method])
    pool, target = pool_and_target
    cfg = SelectConfig(
        pool=pool,
        target=target,
        method=method,
        sae=tiny_sae,
        ratio=0.5,
        out=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        progress=False,
        chunk=3,
    )
    s = run(cfg, model=tiny_model)
    assert s["n_pool"] == 8 and s["n_selected"] == 4
    _check_selection(pool, tmp_path / "out", 4)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["method"] == method


def test_bm25_prefers_the_target_words(tmp_path, pool_and_target):
    pool, target = pool_and_target
    run(SelectConfig(pool=pool, target=target, method="bm25", ratio=0.25, out=tmp_path, progress=False))
    assert b"timer" in (tmp_path / "selected.jsonl").read_bytes()


def test_cache_is_reused_and_keyed_by_data(tmp_path, tiny_model, tiny_sae, pool_and_target):
    pool, target = pool_and_target
    kw = dict(target=target, sae=tiny_sae, cache_dir=tmp_path / "cache", progress=False, overwrite=True)
    first = run(SelectConfig(pool=pool, out=tmp_path / "a", **kw), model=tiny_model)
    again = run(SelectConfig(pool=pool, out=tmp_path / "a", method="cosine", **kw), model=tiny_model)
    assert not first["embeddings_from_cache"] and again["embeddings_from_cache"]
    assert again["cache"] == first["cache"]
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(pool.read_bytes().replace(b"paris", b"music"))
    other = run(SelectConfig(pool=edited, out=tmp_path / "b", **kw), model=tiny_model)
    assert not other["embeddings_from_cache"] and other["cache"] != first["cache"]


def test_refuses_to_overwrite(tmp_path, pool_and_target):
    pool, target = pool_and_target
    cfg = SelectConfig(pool=pool, target=target, method="random", out=tmp_path, progress=False)
    run(cfg)
    with pytest.raises(ValueError, match="overwrite"):
        run(cfg)


def test_cli_names_the_bad_line(tmp_path, pool_and_target, capsys):
    _, target = pool_and_target
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"text": "b"}\n{"txt": "c"}\n')
    rc = main(
        [
            "select",
            "--pool",
            str(bad),
            "--target",
            str(target),
            "--method",
            "random",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    assert "bad.jsonl:3: missing text field 'text'" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": "a"}\n\n')
    assert (
        main(
            [
                "select",
                "--pool",
                str(empty),
                "--target",
                str(target),
                "--method",
                "bm25",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "empty.jsonl:2: empty line" in capsys.readouterr().err
