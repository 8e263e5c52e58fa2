"""`saelab store info` and `saelab store verify` (saelab/store/cli.py): what they print and return."""

from __future__ import annotations

import json

from saelab.cli import main
from saelab.store import store_info
from tests.store.test_store import META, _write


def test_store_info_prints_json_and_a_table(tmp_path, capsys) -> None:
    _write(tmp_path / "s", 230)
    assert main(["store", "info", str(tmp_path / "s"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(store_info(tmp_path / "s")))
    assert main(["store", "info", str(tmp_path / "s")]) == 0
    table = capsys.readouterr().out
    assert "n_tokens" in table and "230" in table and "n_shards" in table
    assert all(f"meta.{k}" in table for k in META)


def test_store_verify_names_a_damaged_shard(tmp_path, capsys) -> None:
    _write(tmp_path / "s", 230)
    assert main(["store", "verify", str(tmp_path / "s")]) == 0
    assert "all shards present and checksums match" in capsys.readouterr().out
    (tmp_path / "s" / "shard_000001.safetensors").write_bytes(b"garbage")
    assert main(["store", "verify", str(tmp_path / "s")]) == 1
    assert "shard_000001.safetensors" in capsys.readouterr().out
