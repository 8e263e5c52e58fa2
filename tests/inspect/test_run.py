"""`saelab inspect` / `feature` / `serve` end to end on a small real store, and the errors for bad inputs."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from pathlib import Path

import pytest

from saelab.cli import main
from saelab.inspect.serve import address, make_server

from .inspect_helpers import HOOK, REAL_HOOK, write_sae, write_store


def _data(report: Path, name: str):
    text = (report / "data" / f"{name}.js").read_text()
    assert text.startswith(f'saelabData("{name}",') and text.rstrip().endswith(");")
    return json.loads(text[len(f'saelabData("{name}",') : text.rstrip().rindex(")")])


def test_report_layout_and_data(report) -> None:
    for page in ("index.html", "latent.html", "shared.js", "app.js", "style.css"):
        assert (report / page).is_file()
    assert "http" not in "".join((report / f).read_text() for f in ("index.html", "shared.js", "app.js"))  # no network
    meta, idx, vocab = _data(report, "meta"), _data(report, "index"), _data(report, "vocab")
    assert meta["d_sae"] == 200 and meta["hook"] == REAL_HOOK and meta["n_tokens"] == 2048 - 32  # BOS excluded
    assert idx["latent"] == list(range(200)) and len(vocab) == 49152
    assert [c / meta["n_tokens"] for c in idx["count"]] == pytest.approx(idx["density"], rel=1e-5)
    shards = sorted(p.name for p in (report / "data").glob("latents_*.js"))
    assert shards == [f"latents_{i:04d}.js" for i in range(4)]  # 64 latents per shard
    rec = _data(report, "latents_0001")["70"]
    assert set(rec) == {"hist", "top", "intervals", "cos", "aip", "pos", "neg"}
    assert sum(rec["hist"]) == idx["count"][70] and len(rec["pos"]) == len(rec["neg"]) == 10
    token, value, ids, acts = rec["top"][0]
    assert value == max(a for a in acts) and vocab[ids[12]]  # the activating token is the centre column


def test_cli_inspect_overwrite_feature_and_errors(real, report, tmp_path, capsys) -> None:
    store, sae = real
    out = shutil.copytree(report, tmp_path / "r")  # an existing report
    common = ["inspect", str(sae), "--store", str(store), "--tokens", "512", "--no-aip"]
    args = [*common, "--out", str(out)]
    assert main(args) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    (tmp_path / ".r.partial").mkdir()  # as an interrupted run leaves it
    (tmp_path / ".r.partial" / "junk").write_text("x")
    assert main([*args, "--overwrite"]) == 0
    assert "report:" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"] and _data(out, "meta")["n_tokens"] == 512 - 8
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main([*common, "--out", str(tmp_path / "other"), "--overwrite"]) == 2
    assert "is not a saelab report" in capsys.readouterr().err and (tmp_path / "other" / "notes.txt").exists()

    assert main(["inspect", "feature", str(sae), "5", "--store", str(store)]) == 0
    text = capsys.readouterr().out
    assert "latent 5" in text and "top logits +" in text and "nearest (cos)" in text
    assert main(["inspect", "feature", str(sae), "200", "--store", str(store)]) == 2
    assert "out of range" in capsys.readouterr().err


def _error(capsys, *args: str) -> str:
    assert main(["inspect", *args, "--out", "/nonexistent/never-written"]) == 2
    return capsys.readouterr().err


def test_bad_inputs_give_clear_errors(real, tmp_path, capsys) -> None:
    store, sae = real
    assert "does not exist" in _error(capsys, str(tmp_path / "nope"), "--store", str(store))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "cfg.json").write_text("{}")
    assert "sae_weights.safetensors is missing" in _error(capsys, str(tmp_path / "half"), "--store", str(store))
    assert "store" in _error(capsys, str(sae), "--store", str(tmp_path / "nostore"))
    (tmp_path / "empty").mkdir()
    assert "no manifest.json" in _error(capsys, str(sae), "--store", str(tmp_path / "empty"))

    other = write_store(tmp_path / "gpt2", d=576, model="gpt2")  # right width, other model
    meta = {"model_name": "smollm2-135m", "hook_name": HOOK, "weights_hash": "abc"}
    sae_here = write_sae(tmp_path / "sae576", d_in=576, meta=meta)
    assert "harvested from model 'gpt2'" in _error(capsys, str(sae_here), "--store", str(other))
    same_name = write_store(tmp_path / "smol", d=576, model="smollm2-135m")  # same name, other weights hash
    sae_hash = write_sae(tmp_path / "sae-hash", d_in=576, meta=meta | {"weights_hash": "fff"})
    assert "from weights abc but SAE" in _error(capsys, str(sae_hash), "--store", str(same_name))
    narrow = write_store(tmp_path / "narrow", d=24, model="smollm2-135m")
    err = _error(capsys, str(sae_here), "--store", str(narrow))
    assert "d_model 24" in err and "d_in 576" in err
    assert "holds only ['blocks.3.hook_resid_post']" in _error(
        capsys, str(sae_here), "--store", str(store)
    )  # SAE of blocks.0, store of blocks.3

    broken = write_store(tmp_path / "broken", d=576, model="smollm2-135m")
    next(broken.glob("shard_*.safetensors")).unlink()
    assert "corrupt or missing shards" in _error(capsys, str(sae_here), "--store", str(broken))


def test_serve_only_on_localhost(report, tmp_path) -> None:
    server = make_server(report, 0)
    assert server.server_address[0] == "127.0.0.1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(address(server), timeout=10) as r:
            assert r.status == 200 and b"saelab latents" in r.read()
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(FileNotFoundError, match="no index.html"):
        make_server(tmp_path, 0)


def test_cli_inspect_reads_a_config_file_with_set_overrides(real, tmp_path, capsys) -> None:
    store, sae = real
    out = tmp_path / "r"
    f = tmp_path / "inspect.toml"
    f.write_text(f'[inspect]\nstore = "{store}"\ntokens = 1024\naip = false\nn_logits = 5\nout = "{out}"\n')
    assert main(["inspect", str(sae), "--config", str(f), "--set", "tokens=512"]) == 0
    assert f"report: {out / 'index.html'}" in capsys.readouterr().out
    assert _data(out, "meta")["n_tokens"] == 512 - 8  # 8 windows of 64, BOS excluded: --set beat the file
    assert len(_data(out, "latents_0000")["3"]["pos"]) == 5  # n_logits from the file
    assert main(["inspect", "--config", str(f), "--set", "bogus=1"]) == 2
    assert "--set: unknown option(s) ['bogus']" in capsys.readouterr().err
