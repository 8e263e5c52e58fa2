"""The protocol's table: AUC mean +- std per task and method over seeds, reused effects counted once."""

from __future__ import annotations

import json

import numpy as np

from saelab.circuits.table import collect, main, markdown


def _write(path, task, recipe, auc, runtime, reused=(), source=None) -> None:
    path.mkdir(parents=True)
    r = {"config": {"task": task, "recipe": recipe}, "auc": auc, "runtime_s": runtime}
    if reused:
        r["effects_from"] = {"file": str(source), "reused": list(reused)}
    (path / "circuits.json").write_text(json.dumps(r))


def test_table_means_over_seeds_and_skips_reused(tmp_path, capsys) -> None:
    for seed, (a, c) in enumerate([(0.7, 0.9), (0.8, 0.95)]):
        d = tmp_path / "ioi" / f"seed{seed}"
        auc = {"sae-codes": a, "attribution": 0.6, "eap-ig": 0.65, "patching-held-out": c}
        _write(d / "saelab", "ioi", "saelab", auc, {"sae-codes": 2.0, "attribution": 1.0, "patching": 30.0})
        reused = ("attribution", "eap-ig", "patching", "patching-held-out")
        paper = auc | {"sae-codes": 0.5}
        # seed 1's run saw its source relative to its working directory, as `saelab run` writes it
        source = d / "saelab/circuits.json" if seed == 0 else f"{tmp_path.name}/ioi/seed1/saelab/circuits.json"
        _write(d / "paper", "ioi", "paper", paper, {"sae-codes": 4.0, "patching": 30.0}, reused, source)
    data = collect(tmp_path)["ioi"]
    assert data["sae-codes saelab"]["auc"] == [0.7, 0.8] and data["sae-codes paper"]["auc"] == [0.5, 0.5]
    assert data["attribution"]["auc"] == [0.6, 0.6] and np.allclose(data["ceiling"]["auc"], [0.9, 0.95])
    assert data["patching"]["runtime_s"] == [30.0, 30.0]  # not counted again from the reusing runs
    text = markdown(collect(tmp_path))
    assert "| ioi | 0.500 +- 0.000 (2) | 0.750 +- 0.050 (2) |" in text and "30.0 s" in text
    assert main([str(tmp_path), "--out", str(tmp_path / "t.md")]) == 0
    assert (tmp_path / "t.md").read_text().strip() == text and text in capsys.readouterr().out


def test_table_counts_effects_reused_from_a_file_it_does_not_read(tmp_path) -> None:
    auc = {"sae-codes": 0.9, "sae-codes-pair": 0.8, "attribution": 0.6, "patching-held-out": 1.0}
    reused = ("attribution", "patching", "patching-held-out")
    measured = tmp_path / "ioi" / "seed1" / "saelab-measured.json"  # re-scored: the measuring run moved aside
    _write(tmp_path / "ioi" / "seed1" / "saelab", "ioi", "saelab", auc, {"patching": 30.0}, reused, measured)
    data = collect(tmp_path)["ioi"]
    assert data["attribution"]["auc"] == [0.6] and data["ceiling"]["auc"] == [1.0]
    assert data["patching"]["runtime_s"] == [30.0] and data["saelab pair (uncalibrated)"]["auc"] == [0.8]
