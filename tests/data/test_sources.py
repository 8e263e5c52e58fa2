"""Each corpus source on real data shipped with the project and on small hand-made files."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from saelab.data import is_heldout, open_corpus
from saelab.data.sources.python_docs import MIN_CHARS, read_docstrings
from saelab.data.texts import WIKITEXT_2_VALID

FILES = Path(__file__).parent / "files"  # test data with its provenance (files/README.md)

_DIGEST = """
import builtins
import hashlib
from saelab.data import open_corpus
h = hashlib.sha256()
for d in open_corpus("python-docs"):
    h.update(f"{d.index}\\0{d.text}\\0".encode())
print(h.hexdigest())
"""


def test_python_docs_is_deterministic_and_substantial() -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", _DIGEST],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    h = hashlib.sha256()
    n = chars = 0
    for d in open_corpus("python-docs"):
        assert d.index == n and len(d.text.strip()) >= MIN_CHARS
        h.update(f"{d.index}\0{d.text}\0".encode())
        n, chars = n + 1, chars + len(d.text)
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0
    assert out.strip() == h.hexdigest()
    assert n > 2000 and chars > 500_000


def test_python_docs_order_and_skipped_folders(tmp_path: Path) -> None:
    (tmp_path / "b.py").write_text(
        '"""Module b has a docstring long enough."""\n'
        'class C:\n    """Class C, documented at length."""\n'
        '    def f(self):\n        """Short."""\n'
        'def g():\n    """Function g, documented at length."""\n'
    )
    (tmp_path / "a.py").write_text('"""Module a comes first in sorted order."""\n')
    (tmp_path / "broken.py").write_text('"""Never read: the file does not parse."""\ndef (:\n')
    for skipped in ("test", "site-packages", "idlelib"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "x.py").write_text('"""A docstring inside a skipped folder."""\n')
    assert list(read_docstrings(tmp_path)) == [
        "Module a comes first in sorted order.",
        "Module b has a docstring long enough.",
        "Class C, documented at length.",
        "Function g, documented at length.",
    ]


def test_wikitext_splits_into_articles() -> None:
    path = WIKITEXT_2_VALID
    lines = path.read_text(encoding="utf-8").splitlines()
    titles = [x.strip() for x in lines if x.startswith(" = ") and not x.startswith(" = = ")]
    sections = sum(x.startswith(" = = ") for x in lines)
    docs = list(open_corpus(f"text:{path}"))
    assert len(docs) == len(titles) == 60
    assert [d.text.split("\n", 1)[0] for d in docs] == titles
    assert sum(d.text.count("\n= = ") for d in docs) == sections
    assert docs[0].text.startswith("= Homarus gammarus =\nHomarus gammarus , known as the European lobster")


def test_shipped_wikitext_corpus_is_the_file_read_as_wikitext() -> None:
    named = open_corpus("wikitext-2")
    assert named.name == "wikitext-2"
    assert named.source.revision == f"bytes={WIKITEXT_2_VALID.stat().st_size}"
    assert list(named) == list(open_corpus(f"text:{WIKITEXT_2_VALID}"))
    heldout = [d.index for d in open_corpus("wikitext-2", split="heldout", heldout_fraction=0.2)]
    assert heldout == [i for i in range(60) if is_heldout("wikitext-2", i, 0.2)] and heldout
    with pytest.raises(ValueError, match="takes no arguments"):
        open_corpus("wikitext-2:valid")


def test_plain_text_splits_on_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("first block\n  indented line\n\n\n  \nsecond = block =\n\nthird\n")
    docs = [d.text for d in open_corpus(f"text:{path}")]
    assert docs == ["first block\n  indented line", "second = block =", "third"]


def test_small_wikitext_file(tmp_path: Path) -> None:
    path = tmp_path / "wiki.txt"
    path.write_text(" \n = One = \n \n Intro . \n \n = = Part = = \n \n Body . \n = Two = \n Text . \n")
    assert [d.text for d in open_corpus(f"text:{path}")] == [
        "= One =\nIntro .\n= = Part = =\nBody .",
        "= Two =\nText .",
    ]


def test_jsonl_joins_fields() -> None:
    path = FILES / "gsm8k-test.jsonl"
    docs = list(open_corpus(f"jsonl:{path}:question+answer"))
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert len(docs) == 1319
    assert docs[0].text == first["question"] + "\n" + first["answer"]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("{not json", r"rows.jsonl:2: not valid JSON .*one JSON object"),
        ("", r"rows.jsonl:2: empty line"),
        ('{"title": "x"}', r"rows.jsonl:2: no field 'text' \(this row has 'title'\)"),
        ('["a", "b"]', r"rows.jsonl:2: a JSON list, not an object"),
        ('{"text": null}', r"rows.jsonl:2: field 'text' is NoneType, not text"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, line: str, error: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(ValueError, match=error):
        list(open_corpus(f"jsonl:{path}:text"))


def test_jsonl_spec_needs_a_field(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "fine"}\n')
    with pytest.raises(ValueError, match="expected jsonl:PATH:FIELD"):
        open_corpus(f"jsonl:{path}")
    with pytest.raises(ValueError, match="empty field name"):
        open_corpus(f"jsonl:{path}:text+")


def test_hf_without_datasets_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="pip install datasets"):
        open_corpus("hf:wikitext:wikitext-2-raw-v1:train:text")


def test_hf_missing_datasets_names_the_hf_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets" or name.startswith("datasets."):
            raise ModuleNotFoundError("No module named 'datasets'", name="datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "datasets", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ImportError, match=r"hf:NAME.*`hf` extra.*pip install 'saelab\[hf\]'"):
        open_corpus("hf:wikitext:wikitext-2-raw-v1:train:text")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    hf_extra = pyproject["project"]["optional-dependencies"]["hf"]
    assert [r for r in hf_extra if r.startswith("datasets")], hf_extra


def _fake_datasets(monkeypatch: pytest.MonkeyPatch, load) -> None:
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load))


def test_hf_unreachable_hub_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'wikitext' on the Hub")

    _fake_datasets(monkeypatch, offline)
    corpus = open_corpus("hf:wikitext:wikitext-2-raw-v1:train:text")
    with pytest.raises(RuntimeError, match="'wikitext'.*hub is unreachable"):
        list(corpus)


def test_hf_streams_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return [{"q": "one", "a": 1}, {"q": "two", "a": 2}]

    _fake_datasets(monkeypatch, load)
    docs = list(open_corpus("hf:org/data:train:q+a"))
    assert calls == [("org/data", None, "train", True)]
    assert [d.text for d in docs] == ["one\n1", "two\n2"]
    with pytest.raises(ValueError, match="expected hf:NAME"):
        open_corpus("hf:org/data:text")
