"""docs/coming-from-saelens.md runs as written: its Python blocks, in order, in one namespace, in a scratch
folder; every call its tables name is used there or tested beside the API it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_tutorial import code_blocks

DOC = Path(__file__).resolve().parents[1] / "docs" / "coming-from-saelens.md"


def test_coming_from_saelens_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = code_blocks(DOC.read_text())
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{DOC.name} block {i + 1}", "exec"), namespace)
        except Exception as e:  # name the block that broke
            raise AssertionError(f"{DOC.name} block {i + 1} failed: {e!r}\n{block}") from e
    assert namespace["reconstruction"].shape == namespace["acts"].shape
    assert namespace["edited"].shape == namespace["logits"].shape
