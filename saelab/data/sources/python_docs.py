"""`python-docs`: docstrings of the running interpreter's standard library, a corpus on every machine.

Read with `ast` (no imports, so no side effects): module, class and function docstrings in source order,
files in sorted path order, so every run of the same interpreter yields the same documents.
"""

from __future__ import annotations

import ast
import os
import platform
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from saelab.data.sources.base import Source

USAGE = "python-docs"
MIN_CHARS = 20
"""Shorter docstrings ("Return self.") carry too little text to be worth a document."""
SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"})
"""Third-party code, test suites (bulky, and partly deliberately broken) and legacy tools."""

_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def open_source(args: str) -> Source:
    if args:
        raise ValueError(f"python-docs takes no arguments, got python-docs:{args}")
    return Source(name="python-docs", revision=f"python-{platform.python_version()}", read=read_docstrings)


def read_docstrings(root: Path | None = None) -> Iterator[str]:
    """Docstrings of at least MIN_CHARS characters from the `.py` files under `root` (default: the stdlib)."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    for path in stdlib_files(root):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError):
            continue
        for doc in _docstrings(tree):
            if len(doc.strip()) >= MIN_CHARS:
                yield doc


def stdlib_files(root: Path) -> list[Path]:
    """`.py` files under `root` outside SKIP_DIRS, sorted by relative path."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        found += [Path(folder, f) for f in files if f.endswith(".py")]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _docstrings(tree: ast.Module) -> Iterator[str]:
    """Docstrings in source order (depth first), including nested classes and functions."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, _DOCUMENTED):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
