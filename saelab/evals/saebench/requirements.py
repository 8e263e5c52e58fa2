"""What the SAEBench suite needs beyond saelab's core install, checked before anything imports it, so a missing
package stops the suite with the command that installs it instead of a bare ModuleNotFoundError."""

from __future__ import annotations

import importlib.util

# module -> pip name: the `saebench` extra (pandas and zstandard read sae-probes' datasets; sklearn fits the probes)
EXTRA = {"pandas": "pandas", "zstandard": "zstandard", "sklearn": "scikit-learn"}
INSTALL = (
    "run `just setup-saebench`, or: pip install 'saelab[saebench]' && pip install --no-deps sae-probes==0.4.2 "
    "(sae-probes ships sparse probing's datasets; --no-deps because it pins a CUDA torch)"
)


def missing_modules() -> list[str]:
    """The pip names of the `saebench` extra's packages that are not installed."""
    return [pip for module, pip in EXTRA.items() if importlib.util.find_spec(module) is None]


def check_installed() -> None:
    """ImportError naming the missing packages and the install command, when any of the extra is missing."""
    missing = missing_modules()
    if missing:
        raise ImportError(f"the SAEBench suite needs {', '.join(missing)}: {INSTALL}")
