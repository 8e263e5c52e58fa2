"""`saelab train export` and `train.copy_export`: a run's SAELens-format SAE, where it is or copied elsewhere."""

from __future__ import annotations

from saelab.cli import main
from saelab.train import copy_export
from tests.runtime.run_helpers import make_run


def test_copy_export_and_the_export_command(tmp_path, capsys) -> None:
    run = make_run(tmp_path / "r")
    assert copy_export(run.root) == run.sae  # no --out: the export where it is
    out = tmp_path / "copy"
    assert main(["train", "export", str(run.root), "--out", str(out)]) == 0
    assert f"SAELens-format SAE: {out}" in capsys.readouterr().out
    assert (out / "cfg.json").read_bytes() == (run.sae / "cfg.json").read_bytes()
    assert main(["train", "export", str(run.root), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["train", "export", str(run.root), "--out", str(out), "--overwrite"]) == 0
    unfinished = make_run(tmp_path / "u", exported=False)
    assert main(["train", "export", str(unfinished.root)]) == 2
    assert "has no finished export" in capsys.readouterr().err
