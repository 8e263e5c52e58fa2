"""Autointerp results on the dashboards: the `autointerp.json` that `saelab autointerp` writes beside a run
(explanations and their scores against the shuffled-explanation control) copied into a report as its
`data/autointerp.js`, which each latent page shows when it is there.

This module reads the file as plain JSON, so `inspect` (and `saelab explain`) need nothing from the autointerp
package: the dependency runs one way, autointerp -> inspect.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

RESULT_FILE = "autointerp.json"
DATA_NAME = "autointerp"  # data/autointerp.js in a report
VERSION = 1


def result_path(sae: str | Path) -> Path:
    """Where autointerp results of this SAE are kept: SAE/autointerp.json (the run or SAE directory)."""
    return Path(sae) / RESULT_FILE


def read_autointerp(path: str | Path) -> dict[str, Any]:
    """An autointerp result file, checked: a ValueError naming the file for another format or version."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path} is not JSON ({e}); rerun `saelab autointerp` to write it again") from e
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("latents"), dict):
        raise ValueError(
            f"{path} is not a saelab autointerp result of version {VERSION}; rerun `saelab autointerp` to write it"
        )
    return data


def find_autointerp(sae: str | Path) -> dict[str, Any] | None:
    """The autointerp results kept beside this SAE, or None when there are none."""
    path = result_path(sae)
    return read_autointerp(path) if path.is_file() else None


def explanations(data: dict[str, Any] | None) -> dict[int, str]:
    """latent -> its explanation, from an autointerp result (empty for None)."""
    if not data:
        return {}
    return {int(k): str(v.get("explanation", "")) for k, v in data["latents"].items()}


def attach(report: str | Path, data: dict[str, Any]) -> Path:
    """Write `data` into the report as data/autointerp.js (replacing an older one); returns its path."""
    target = Path(report) / "data"
    if not (Path(report) / "index.html").is_file() or not target.is_dir():
        raise ValueError(f"{report} is not a saelab report (no index.html and data/); build it with saelab inspect")
    text = json.dumps(json_safe(data), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    path = target / f"{DATA_NAME}.js"
    tmp = path.with_suffix(".js.partial")
    tmp.write_text(f'saelabData("{DATA_NAME}",{text});\n', encoding="utf-8")
    tmp.replace(path)
    return path


def attach_found(report: str | Path, sae: str | Path) -> Path | None:
    """Attach the autointerp results kept beside `sae` to `report`, when there are any."""
    data = find_autointerp(sae)
    return attach(report, data) if data is not None else None


def json_safe(obj: Any) -> Any:
    """`obj` with every non-finite float as None (JSON has no NaN: a score without samples shows as empty)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj
