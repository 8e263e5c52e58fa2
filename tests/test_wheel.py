"""The wheel carries every data file the package reads: a non-editable `pip install .` must run the demo from
any directory, so the corpus texts, the dashboard assets and anything else saelab opens beside its modules
have to be package data. Built from a copy of the sources, so no build/ folder lands in the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from saelab.data.texts import CLINC150, TEXTS, WIKITEXT_2_VALID
from saelab.inspect.site import ASSETS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "saelab"


def _data_files() -> set[str]:
    """Every file under saelab/ that is not Python source, as a path inside the wheel."""
    return {
        p.relative_to(ROOT).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }


def _build_wheel(tmp: Path) -> set[str]:
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(PACKAGE, src / "saelab", ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w"]
    subprocess.run([*cmd, str(tmp / "dist")], check=True, capture_output=True, text=True, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("saelab-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_the_wheel_holds_every_data_file_the_package_reads(tmp_path: Path) -> None:
    names = _build_wheel(tmp_path)
    assert "saelab/cli.py" in names and any(n.endswith("entry_points.txt") for n in names)
    read = {WIKITEXT_2_VALID, *CLINC150.glob("*.jsonl"), *(TEXTS / "bbh").glob("*"), *ASSETS.glob("*")}
    assert len(read) >= 10
    missing = sorted(p.relative_to(ROOT).as_posix() for p in read if p.relative_to(ROOT).as_posix() not in names)
    assert not missing, f"read by saelab but not in the wheel (pyproject [tool.setuptools.package-data]): {missing}"
    data = _data_files()
    assert data >= {p.relative_to(ROOT).as_posix() for p in read}
    assert not sorted(data - names), f"data files under saelab/ left out of the wheel: {sorted(data - names)}"
