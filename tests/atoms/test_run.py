"""`saelab atoms` end to end on a synthetic store: neurons, features and atoms rows, labelled numbers, plots."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.atoms.config import AtomsConfig
from saelab.atoms.run import run
from saelab.atoms.synthetic import make_codes, make_dictionary, synthesize
from saelab.cli import main
from saelab.sae import SAEParams, TopKConfig, sae_config, save_saelens
from saelab.store import StoreWriter

HOOK = "blocks.2.hook_resid_post"
D, N = 16, 1200


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A store of x = z D (D orthonormal, z nonneg 2-sparse) and two SAEs that encode it exactly: a TopK
    (features) and a JumpReLU (atoms) with W_dec = D, W_enc = D^T."""
    root = tmp_path_factory.mktemp("atoms")
    Dict = make_dictionary(D, D, "orthonormal", seed=0)
    X = synthesize(Dict, make_codes(N, D, 2, seed=1))
    w = StoreWriter.create_or_resume(
        root / "store", meta={"model": "synthetic"}, hooks=[HOOK], d_model=D, dtype="float32", shard_tokens=500
    )
    w.append({HOOK: X}, np.arange(N), np.arange(N) // 60, 1 + np.arange(N) % 60)  # no BOS positions
    w.finalize()
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    for arch in ("topk", "jumprelu"):
        cfg = sae_config(architecture=arch, d_in=D, d_sae=D, **({"k": 2} if arch == "topk" else {}))
        thr = f32(np.full(D, 0.1)) if arch == "jumprelu" else None
        params = SAEParams(f32(Dict.T), f32(np.zeros(D)), f32(Dict), f32(np.zeros(D)), thr)
        save_saelens(root / arch, params, cfg, {"hook_name": HOOK, "model_name": "synthetic"})
    return root


def _cfg(root, **kw) -> AtomsConfig:
    base = dict(
        sae=[root / "jumprelu"],
        baselines=["neurons", f"feat={root / 'topk'}"],
        store=root / "store",
        out=root / "out",
        tokens=1000,
        rip_subsets=64,
        recovery_samples=64,
        recovery_iters=100,
        angle_pairs=500,
        progress=False,
    )
    return AtomsConfig(**(base | kw))


def test_table_rows_definitions_and_files(setup):
    result = run(_cfg(setup))
    rows = {r["kind"]: r for r in result["table"]}
    assert [r["kind"] for r in result["table"]] == ["neurons", "features", "atoms"]
    assert rows["features"]["dictionary"] == "feat" and rows["atoms"]["dictionary"] == "atoms (jumprelu, 16)"
    for r in result["table"]:
        assert r["hook"] == HOOK and r["layer"] == 2 and r["d_sae"] == D
        for key, value in r.items():
            if isinstance(value, float):
                assert key in result["definitions"], f"{key} has no definition"
    # exact encoders and the identity reconstruct perfectly; neurons code with every coordinate
    for kind in ("neurons", "features", "atoms"):
        assert rows[kind]["r2"] == pytest.approx(1.0, abs=1e-5)
    assert rows["neurons"]["l0"] == D and rows["atoms"]["l0"] == 2.0 == rows["features"]["l0"]
    assert rows["neurons"]["coherence_euclidean"] == 0.0 < rows["neurons"]["coherence"]
    # 2-sparse codes over near-orthogonal atoms are unique; 16-sparse neuron codes are not
    assert rows["atoms"]["uniqueness"] == rows["atoms"]["q_star"] == 1.0
    assert rows["neurons"]["uniqueness_samples"] == 0.0
    assert rows["atoms"]["lasso_recall"] == 1.0
    # support reading: all 16 neurons are active, so it equals the default; atoms stay unique under both
    assert rows["neurons"]["uniqueness_samples_support"] == rows["neurons"]["uniqueness_samples"]
    assert rows["atoms"]["q_star_support"] == 1.0
    assert result["tokens_analysed"] == 1000 and result["metric"][HOOK]["cond"] > 1
    out = setup / "out"
    saved = json.loads((out / "atoms.json").read_text())
    assert saved["table"][2]["dictionary"] == "atoms (jumprelu, 16)"
    assert all(d["definition"] for d in saved["details"][f"{HOOK} | feat"].values())
    md = (out / "atoms.md").read_text()
    assert "| 2 | atoms (jumprelu, 16) | 16 | 2 | 100.0% | 100.0% |" in md and "## Definitions" in md
    names = {p.split("/")[-1] for p in saved["plots"]}
    assert names == {f"{k}_blocks_2_hook_resid_post.png" for k in ("angles", "coherence", "uniqueness_vs_l0")}


def test_cli_runs_and_reports_bad_input(setup, capsys):
    out = setup / "cli"
    args = [
        str(setup / "jumprelu"),
        "--store",
        str(setup / "store"),
        "--out",
        str(out),
        "--tokens",
        "5000",
        "--min-position",
        "2",
        "--rip-subsets",
        "0",
        "--recovery-samples",
        "0",
        "--angle-pairs",
        "100",
        "--no-plots",
        "--no-progress",
    ]
    assert main(["atoms", *args]) == 0
    assert "atoms (jumprelu, 16)" in capsys.readouterr().out and (out / "atoms.json").exists()
    assert json.loads((out / "atoms.json").read_text())["tokens_analysed"] == N - N // 60  # position 1 dropped
    assert main(["atoms", *args[:1], "--store", str(setup / "nope"), "--out", str(out)]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["atoms", *args, "--baselines", "neurons,features"]) == 2
    assert "neither 'neurons' nor an existing SAE path" in capsys.readouterr().err


def test_sae_for_a_hook_the_store_lacks_is_an_error(setup, tmp_path):
    cfg = TopKConfig(d_in=D, d_sae=D, k=2)
    params = SAEParams(*(jnp.zeros(s, jnp.float32) for s in [(D, D), (D,), (D, D), (D,)]))
    save_saelens(tmp_path / "other", params, cfg, {"hook_name": "blocks.9.hook_resid_post"})
    with pytest.raises(ValueError, match="blocks.9.hook_resid_post, which store"):
        run(_cfg(setup, sae=[tmp_path / "other"], baselines=[]))
