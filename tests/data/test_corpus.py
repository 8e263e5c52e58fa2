"""Spec lookup, the held-out split, fingerprints and lookup by index."""

from __future__ import annotations

from pathlib import Path

import pytest

from saelab.data import Document, is_heldout, open_corpus


@pytest.fixture
def blocks(tmp_path: Path) -> Path:
    path = tmp_path / "blocks.txt"
    path.write_text("\n\n".join(f"document number {i}\nsecond line" for i in range(400)) + "\n")
    return path


def test_unknown_spec_lists_the_valid_forms() -> None:
    with pytest.raises(ValueError, match=r"python-docs.*text:PATH.*jsonl:PATH:FIELD.*hf:NAME\[:CONFIG\]"):
        open_corpus("csv:data.csv")


@pytest.mark.parametrize("kwargs", [{"split": "test"}, {"heldout_fraction": 0.0}, {"heldout_fraction": 1.5}])
def test_bad_split_or_fraction_is_rejected(blocks: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        open_corpus(f"text:{blocks}", **kwargs)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nope.txt does not exist"):
        open_corpus(f"text:{tmp_path / 'nope.txt'}")


def test_train_and_heldout_are_disjoint_and_cover_all(blocks: Path) -> None:
    spec = f"text:{blocks}"
    every = list(open_corpus(spec))
    train = {d.index for d in open_corpus(spec, split="train")}
    held = {d.index for d in open_corpus(spec, split="heldout")}
    assert [d.index for d in every] == list(range(400))
    assert train.isdisjoint(held) and train | held == set(range(400))
    assert 5 <= len(held) <= 40  # 5% of 400 = 20
    wider = {d.index for d in open_corpus(spec, split="heldout", heldout_fraction=0.2)}
    assert held < wider


def test_split_depends_on_file_name_not_folder(blocks: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / blocks.name
    moved.parent.mkdir()
    moved.write_bytes(blocks.read_bytes())
    a = [d.index for d in open_corpus(f"text:{blocks}", split="heldout")]
    assert a == [d.index for d in open_corpus(f"text:{moved}", split="heldout")]


def test_heldout_hash_is_pinned() -> None:
    """Changing the hash would silently change the split of every existing store."""
    held = [i for i in range(200) if is_heldout("python-docs", i, 0.05)]
    assert held == [27, 29, 58, 64, 75, 83, 96, 106, 112, 116, 120, 123, 125, 131, 143, 145, 146, 151, 167, 168]


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_text("a single document\n")
    empty = "train" if is_heldout("text:one.txt", 0, 0.05) else "heldout"
    with pytest.raises(ValueError, match=f"split '{empty}' .* is empty"):
        list(open_corpus(f"text:{path}", split=empty))


def test_fingerprint_tracks_spec_split_fraction_and_content(blocks: Path) -> None:
    spec = f"text:{blocks}"
    base = open_corpus(spec, split="train").fingerprint()
    assert len(base) == 16 and base == open_corpus(spec, split="train").fingerprint()
    assert base != open_corpus(spec, split="heldout").fingerprint()
    assert base != open_corpus(spec, split="train", heldout_fraction=0.1).fingerprint()
    blocks.write_text(blocks.read_text() + "\nmore text\n")
    assert base != open_corpus(spec, split="train").fingerprint()


def test_lookup_returns_texts_by_index(blocks: Path) -> None:
    corpus = open_corpus(f"text:{blocks}", split="heldout")
    assert corpus.lookup([3, 399]) == {3: "document number 3\nsecond line", 399: "document number 399\nsecond line"}
    assert isinstance(next(iter(corpus)), Document)
