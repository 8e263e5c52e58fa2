"""docs/tutorial.md runs as written: its Python blocks, in order, in one namespace, in a scratch folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_tutorial_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = code_blocks(TUTORIAL.read_text())
    assert len(blocks) >= 7
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{TUTORIAL.name} block {i + 1}", "exec"), namespace)
        except Exception as e:  # name the block that broke
            raise AssertionError(f"tutorial block {i + 1} failed: {e!r}\n{block}") from e
    assert namespace["att"].effects
    assert (tmp_path / "work" / "report" / "index.html").is_file()
