"""An architecture added from outside saelab (tests/train/toy_architecture.py) with one `register` line is
trained, exported, planned, read as an atoms dictionary and inspected with no other file touched."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from saelab import train
from saelab.atoms import load_dictionary
from saelab.inspect import InspectConfig
from saelab.inspect import run as inspect
from saelab.sae import Architecture, encode, load_sae, register, unregister
from saelab.store import ActivationStore
from saelab.train.plan import F32, ROW_ARRAYS, plan_config

from . import toy_architecture as toy

HOOK = "blocks.3.hook_resid_post"  # the real_store fixture's hook (conftest.py)


@pytest.fixture
def toy_registered():
    register(
        Architecture(
            "toy",
            toy.ToyConfig,
            toy.encode,
            toy.decode,
            toy.loss,
            unit_norm_decoder=True,
            latent_arrays=3.0,
        )
    )
    yield
    unregister("toy")


def _data(report: Path, name: str):
    text = (report / "data" / f"{name}.js").read_text().rstrip()
    return json.loads(text[len(f'saelabData("{name}",') : text.rindex(")")])


def test_toy_architecture_trains_exports_plans_and_inspects(toy_registered, real_store, tmp_path) -> None:
    sets = [
        f"data.store='{real_store}'",
        "data.batch_size=512",
        "sae.architecture='toy'",
        "sae.expansion=2",
        "sae.l1_coefficient=0.05",
        "train.tokens=20480",
        "train.log_every=5",
        "train.wandb='disabled'",
        "train.progress=false",
        f"train.out='{tmp_path}'",
        "train.name='toy'",
    ]
    with pytest.raises(ValueError, match=r"k does not apply to toy SAEs \(k applies to batchtopk, clt, matryoshka"):
        train.load_config(None, [*sets, "sae.k=8"])
    cfg = train.load_config(None, sets)
    assert cfg.train.input_scaling == "sqrt_d"  # the entry's default

    r = train.run(cfg)
    rows = [json.loads(line) for line in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["explained_variance"] > rows[0]["explained_variance"] + 0.1
    assert r.params.threshold is None
    np.testing.assert_allclose(np.linalg.norm(r.params.W_dec, axis=1), 1.0, rtol=1e-5)  # unit_norm_decoder

    sae = load_sae(r.run_dir)  # the export, input scaling folded in
    assert sae.cfg.architecture == "toy" and sae.cfg.l1_coefficient == 0.05 and sae.params.threshold is None
    assert json.loads((r.export_dir / "cfg.json").read_text())["architecture"] == "standard"
    store = ActivationStore(real_store)
    x = jnp.asarray(np.asarray(store.activations(HOOK)[:1024], np.float32))
    s = sae.metadata["input_scale_folded"]
    want = toy.decode(r.params, toy.encode(r.params, x * s, sae.cfg)) / s  # the training-space SAE on raw x
    got = toy.decode(sae.params, encode(sae.params, x, sae.cfg))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)

    p = plan_config(cfg, d_in=576, devices=1)
    lat, rows_ = 2 * 576, 512
    assert p.params == F32 * (2 * 576 * lat + lat + 576)  # no threshold
    assert p.activations == F32 * rows_ * (round(3.0 * lat) + ROW_ARRAYS * 576)

    assert load_dictionary(r.run_dir).kind == "features"

    out = tmp_path / "report"
    inspect(InspectConfig(sae=r.run_dir, store=real_store, out=out, tokens=1024, max_active=lat, aip=False))
    meta, idx = _data(out, "meta"), _data(out, "index")
    assert meta["architecture"] == "toy" and meta["k"] is None and meta["max_active"] == lat
    valid = np.asarray(store.pos[:1024]) != 0  # BOS positions are not counted
    codes = np.asarray(encode(sae.params, x, sae.cfg))[valid]  # (tokens, d_sae)
    assert meta["n_tokens"] == int(valid.sum())
    np.testing.assert_array_equal(idx["count"], (codes > 0).sum(0))
