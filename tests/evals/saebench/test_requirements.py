"""The suite's extra: a missing package stops the suite with the install command, and nothing else needs it (the
experiment runner and the CLI import without pandas, scikit-learn or zstandard)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from saelab.evals import saebench
from saelab.evals.saebench import requirements


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(requirements.EXTRA, "saelab_no_such_module", "no-such-package")
    assert requirements.missing_modules() == ["no-such-package"]
    with pytest.raises(ImportError, match=r"needs no-such-package: run `just setup-saebench`"):
        saebench.run(None)


def test_installed_extra_passes() -> None:
    assert requirements.missing_modules() == []
    requirements.check_installed()


BLOCKED = """
import sys
for name in ("pandas", "sklearn", "zstandard"):
    sys.modules[name] = None  # import fails as if not installed
import saelab.cli, saelab.experiment
from saelab.evals import saebench
from saelab.evals.saebench import table
try:
    saebench.run(None)
except ImportError as e:
    print(e)
"""


def test_runner_and_cli_import_without_the_extra() -> None:
    out = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "needs pandas, zstandard, scikit-learn: run `just setup-saebench`" in out.stdout
