"""`saelab harvest --config FILE.toml --set key=value`: the file's options, overridden, reach the store."""

from __future__ import annotations

from pathlib import Path

from saelab.cli import main
from saelab.store import ActivationStore


def test_harvest_from_a_config_file_with_a_set_override(tmp_path: Path, capsys) -> None:
    out = tmp_path / "store"
    f = tmp_path / "harvest.toml"
    f.write_text(f"""
hooks = ["blocks.1.hook_resid_post"]
corpus = "wikitext-2"
split = "all"
tokens = 4096
context = 64
batch = 2
shard_tokens = 128
dtype = "float32"
out = "{out}"
""")
    assert main(["harvest", "--config", str(f), "--set", "tokens=256", "--context", "32"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"store: {out}")
    store = ActivationStore(out)
    assert store.n_tokens == 256  # --set beat the file's 4,096
    assert store.manifest["hooks"] == ["blocks.1.hook_resid_post"] and store.manifest["dtype"] == "float32"
    assert store.manifest["meta"]["corpus"] == "wikitext-2" and store.manifest["meta"]["context"] == 32  # the flag
    assert len(store.manifest["shards"]) == 2  # shard_tokens 128 from the file
