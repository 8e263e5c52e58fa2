"""`saelab eval --config FILE.toml --set key=value` on a small random SAE, over the shipped WikiText-2."""

from __future__ import annotations

import json
from pathlib import Path

import jax

from saelab.cli import main
from saelab.sae import TopKConfig, init_params
from saelab.sae.saelens_io import save_saelens

HOOK = "blocks.1.hook_resid_post"


def test_eval_from_a_config_file_with_a_set_override(tmp_path: Path, capsys) -> None:
    cfg = TopKConfig(d_in=576, d_sae=64, k=4)
    sae = save_saelens(
        tmp_path / "sae", init_params(jax.random.key(0), cfg), cfg, {"model_name": "smollm2-135m", "hook_name": HOOK}
    )
    out = tmp_path / "eval.json"
    f = tmp_path / "eval.toml"
    f.write_text(f"""
sae = "{sae}"
corpus = "wikitext-2"
split = "all"
tokens = 4096
context = 64
batch = 2
progress = false
out = "{out}"
""")
    assert main(["eval", "--config", str(f), "--set", "tokens=256", "--context", "32"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-2] == f"eval JSON: {out}"
    meta = json.loads(out.read_text())["meta"]
    assert (meta["corpus"], meta["split"], meta["hook"], meta["d_sae"]) == ("wikitext-2", "all", HOOK, 64)
    assert (meta["tokens_evaluated"], meta["context"]) == (256, 32)  # --set and the flag beat the file
