"""docs/tutorial.md runs as written, as the notebook docs/tutorial.ipynb (jupytext's conversion of it, kept
in sync here): every cell, in order, in a Jupyter kernel, in a scratch folder."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

DOCS = Path(__file__).resolve().parents[1] / "docs"
TUTORIAL, NOTEBOOK = DOCS / "tutorial.md", DOCS / "tutorial.ipynb"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_notebook_is_the_tutorial() -> None:
    want = [(c.cell_type, c.source) for c in jupytext.reads(TUTORIAL.read_text(), fmt="md").cells]
    have = [(c.cell_type, c.source) for c in nbformat.read(NOTEBOOK, as_version=4).cells]
    assert have == want, "docs/tutorial.ipynb is stale: `jupytext --to notebook docs/tutorial.md` rewrites it"
    assert len(code_blocks(TUTORIAL.read_text())) >= 7


def test_tutorial_notebook_runs(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "steered:" in outputs and "largest logit change" in outputs
    assert (tmp_path / "work" / "report" / "index.html").is_file()
