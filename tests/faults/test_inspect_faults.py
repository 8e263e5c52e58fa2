"""An interrupted `saelab inspect --overwrite` (SIGKILL while writing the new site, or between the renames
that swap it in) never loses the existing report, and a rerun completes."""

from __future__ import annotations

import shutil

import pytest

from saelab.inspect import InspectConfig
from saelab.inspect import run as inspect
from tests.inspect.inspect_helpers import real_store_and_sae

from .conftest import killed


def _tree(d) -> dict[str, bytes]:
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The config of a report built from 1,024 tokens of SmolLM2 layer 3 and a random TopK SAE of 64 latents."""
    root = tmp_path_factory.mktemp("inspect")
    store, sae = real_store_and_sae(root, tokens=1024, d_sae=64)
    cfg = InspectConfig(sae=sae, store=store, out=root / "report", batch_windows=8, top_k=4, shard_latents=16)
    inspect(cfg, progress=False)
    return cfg


KILL_POINTS = {
    "while writing the new site": """
        from saelab.inspect import site
        real, n = site._write, [0]
        def write(out, name, obj):
            n[0] += 1
            if n[0] == 3:
                die()
            real(out, name, obj)
        site._write = write
    """,
    "between the renames": """
        from pathlib import Path
        real = Path.rename
        def rename(self, target):
            if self.name.endswith(".partial"):
                die()  # the old report is already moved aside to .NAME.old
            return real(self, target)
        Path.rename = rename
    """,
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_interrupted_inspect_keeps_the_old_report_and_a_rerun_completes(inputs, tmp_path, point) -> None:
    cfg = inputs.model_copy(update={"out": tmp_path / "report"})
    shutil.copytree(inputs.out, cfg.out)  # an existing report
    before = _tree(cfg.out)
    argv = ["inspect", str(cfg.sae), "--store", str(cfg.store), "--out", str(cfg.out), "--batch-windows", "8"]
    killed(KILL_POINTS[point], [*argv, "--top-k", "4", "--shard-latents", "16", "--overwrite"])
    if point == "between the renames":
        assert not cfg.out.exists() and (tmp_path / ".report.old" / "index.html").exists()
    # a rerun (without --overwrite, as after any run) first puts the old report back, then refuses to replace it
    with pytest.raises(ValueError, match="report .* exists; pass --overwrite"):
        inspect(cfg, progress=False)
    assert _tree(cfg.out) == before
    inspect(cfg.model_copy(update={"overwrite": True}), progress=False)
    assert _tree(cfg.out).keys() == before.keys()
    assert not (tmp_path / ".report.old").exists() and not (tmp_path / ".report.partial").exists()
