"""`run_scale`: a pool built by cycling a source, one selection over it, and the named result scale.json holds."""

from __future__ import annotations

import json

from saelab.select.config import SelectConfig
from saelab.select.scale import ScaleResult, make_pool, run_scale


def test_make_pool_cycles_the_source_with_running_ids(tmp_path, pool_and_target) -> None:
    source, _ = pool_and_target
    out = make_pool(source, 11, tmp_path / "big.jsonl")
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in recs] == list(range(11))
    assert recs[8]["text"] == recs[0]["text"] == "set a timer for five minutes"


def test_run_scale_returns_what_scale_json_holds(tmp_path, pool_and_target) -> None:
    source, target = pool_and_target
    cfg = SelectConfig(
        pool=tmp_path / "big.jsonl", target=target, method="random", ratio=0.25, out=tmp_path / "o", progress=False
    )
    r = run_scale(cfg, source, 20)
    assert isinstance(r, ScaleResult) and r.n_pool == 20 and r.method == "random" and r.chunk == cfg.chunk
    assert r.samples_per_s > 0 and r.peak_rss_mib > 0 and r.wall_seconds >= 0
    saved = json.loads((tmp_path / "o" / "scale.json").read_text())
    assert saved == r._asdict() and list(saved) == list(ScaleResult._fields)
    assert sum(1 for _ in (tmp_path / "o" / "selected.jsonl").open()) == 5
