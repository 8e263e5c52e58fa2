"""Write the dashboards as a static site: the page files from `assets/` plus data in compact JSON shards.

Each data file is one JSON document wrapped as `saelabData("name", {...});` so the pages load it with a
`<script>` tag: that works from a plain file:// open as well as from `saelab inspect serve` (a fetch() of JSON would
be refused on file://). The index holds one row per latent in columns; latent details live in shards of
`shard_latents` latents, so a page loads only the shard it shows and a 16k-latent SAE stays light.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from saelab.inspect.collect import ActivationStats, Contexts
from saelab.inspect.weights import LogitLens, Ranked

ASSETS = Path(__file__).parent / "assets"
PAGES = ("index.html", "latent.html", "shared.js", "app.js", "style.css")
DATA = "data"


class Dashboards(NamedTuple):
    """Everything a report shows."""

    stats: ActivationStats
    lens: LogitLens | None  # rows follow stats.latents; None when the hook is not in the residual stream
    cosine: Ranked  # rows follow stats.latents
    aip: Ranked | None
    vocab: list[str]  # token id -> text
    meta: dict[str, Any]  # provenance shown at the top of every page


def shard_name(i: int) -> str:
    return f"latents_{i:04d}"


def write_site(out: Path, d: Dashboards, shard_latents: int = 64, overwrite: bool = False) -> Path:
    """Write the site into `out`; an existing report there is replaced only with `overwrite`.

    The site is written whole into a hidden sibling `.NAME.partial` and renamed into place, so an interrupted
    run never leaves a half report at `out` (and a rerun just starts again).
    """
    out = Path(out)
    replace = check_out(out, overwrite)
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted run: only this module writes that name
    (tmp / DATA).mkdir(parents=True)
    for page in PAGES:
        shutil.copyfile(ASSETS / page, tmp / page)
    s = d.stats
    meta = d.meta | {
        "shard_latents": shard_latents,
        "d_sae": int(len(s.count)),
        "n_tokens": s.n_tokens,
        "n_over": s.n_over,
        "bins": int(s.hist.shape[1]),
    }
    _write(tmp, "meta", meta)
    _write(tmp, "vocab", d.vocab)
    _write(tmp, "index", index_columns(d))
    rows = {int(lat): r for r, lat in enumerate(s.latents)}
    for shard in sorted({lat // shard_latents for lat in rows}):
        lats = [lat for lat in range(shard * shard_latents, (shard + 1) * shard_latents) if lat in rows]
        _write(tmp, shard_name(shard), {str(lat): latent_record(d, rows[lat], lat) for lat in lats})
    if replace:
        old = out.parent / f".{out.name}.old"
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        if out.exists():
            out.rmdir()  # empty (check_out refuses anything else)
        tmp.rename(out)
    return out / "index.html"


def check_out(out: Path, overwrite: bool) -> bool:
    """Whether `out` holds a report to replace; ValueError for one without `overwrite` or for a non-empty
    directory that is not a report (never deleted)."""
    out = Path(out)
    _recover(out)
    if not out.exists() or not any(out.iterdir()):
        return False
    if not (out / "index.html").is_file() or not (out / DATA).is_dir():
        raise ValueError(f"{out} exists and is not a saelab report; choose another --out")
    if not overwrite:
        raise ValueError(f"report {out} exists; pass --overwrite to replace it")
    return True


def _recover(out: Path) -> None:
    """Finish a replace that was interrupted between its two renames: the old report, moved aside, goes back
    to `out` when nothing took its place, and is dropped when the new one did."""
    old = out.parent / f".{out.name}.old"
    if not old.is_dir():
        return
    if out.exists():
        shutil.rmtree(old)
    else:
        old.rename(out)


def index_columns(d: Dashboards) -> dict[str, Any]:
    """One entry per latent with details: sortable numbers, and token lists (as text) to search."""
    s = d.stats
    lat = s.latents
    n = max(s.n_tokens, 1)
    centre = d.meta["left"]  # column of the activating token in every context
    top_tokens = [_frequent_tokens(s.top.ids[r, :, centre], d.vocab) for r in range(len(lat))]
    logits = (
        [[d.vocab[t] for t in d.lens.positive.index[r, :3]] for r in range(len(lat))]
        if d.lens is not None
        else [[] for _ in lat]
    )
    return {
        "latent": lat.tolist(),
        "density": _round(s.count[lat] / n, 6),
        "count": s.count[lat].tolist(),
        "max": _round(s.max[lat]),
        "mean": _round(s.mean[lat]),
        "top_tokens": top_tokens,
        "top_logits": logits,
    }


def latent_record(d: Dashboards, r: int, lat: int) -> dict[str, Any]:
    """The detail data of latent `lat` (row r of the kept latents)."""
    s = d.stats
    per = s.intervals.token.shape[1] // d.meta["quantiles"]
    n_int = d.meta["quantiles"]
    mx = float(s.max[lat])
    intervals = [
        [
            _round(mx * i / n_int),
            _round(mx * (i + 1) / n_int),
            sorted(_examples(s.intervals, r, slice(i * per, (i + 1) * per)), key=lambda e: -e[1]),
        ]
        for i in range(n_int)
    ]
    rec = {
        "hist": s.hist[lat].tolist(),
        "top": _examples(s.top, r, slice(None)),
        "intervals": intervals,
        "cos": _ranked(d.cosine, r),
    }
    if d.lens is not None:
        rec |= {"pos": _ranked(d.lens.positive, r), "neg": _ranked(d.lens.negative, r)}
    if d.aip is not None:
        rec["aip"] = _ranked(d.aip, r)
    return rec


def _examples(c: Contexts, r: int, cols: slice) -> list[list[Any]]:
    """[[token index, activation, token ids (-1: none), activations], ...] for the filled examples."""
    keep = [j for j in range(c.token.shape[1])[cols] if c.token[r, j] >= 0]
    return [[int(c.token[r, j]), _round(c.value[r, j]), c.ids[r, j].tolist(), _round(c.acts[r, j])] for j in keep]


def _ranked(x: Ranked, r: int) -> list[list[Any]]:
    return [[int(i), v] for i, v in zip(x.index[r], _round(x.value[r]), strict=True)]


def _frequent_tokens(ids: np.ndarray, vocab: Sequence[str], n: int = 3) -> list[str]:
    """The n most frequent tokens among the top contexts' activating tokens, most frequent first."""
    u, c = np.unique(ids[ids >= 0], return_counts=True)
    return [vocab[t] for t in u[np.argsort(-c, kind="stable")][:n]]


def _round(a: Any, digits: int = 4) -> Any:
    """Floats with `digits` significant digits as JSON numbers (nested lists for arrays): compact shards."""
    a = np.asarray(a, np.float64)
    if a.ndim == 0:
        return float(f"{a:.{digits}g}")
    if a.ndim > 1:
        return [_round(x, digits) for x in a]
    return [float(f"{v:.{digits}g}") for v in a.tolist()]


def _write(out: Path, name: str, obj: Any) -> None:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    (out / DATA / f"{name}.js").write_text(f'saelabData("{name}",{text});\n', encoding="utf-8")


def read_report_index(report: Path) -> dict[str, list]:
    """A report's per-latent index (latent, density, count, max, mean, top_tokens, top_logits), read back."""
    path = Path(report) / DATA / "index.js"
    if not path.is_file():
        raise FileNotFoundError(f"{report} is not a saelab report (no {DATA}/index.js); build one with saelab inspect")
    text = path.read_text(encoding="utf-8")
    prefix = 'saelabData("index",'
    if not text.startswith(prefix):
        raise ValueError(f"{path} is not a saelab report index")
    return json.loads(text[len(prefix) : text.rindex(");")])


def read_top_tokens(report: Path) -> dict[int, list[str]]:
    """Each latent's most frequent top-activating tokens, read back from a report's index data."""
    index = read_report_index(report)
    return {int(lat): list(toks) for lat, toks in zip(index["latent"], index["top_tokens"], strict=True)}
