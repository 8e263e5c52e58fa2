"""The synth stages end to end on a tiny world: `synth-world` writes a world and a store, saelab's trainer and
SAELens's (through saelab.peers) train on that store, `synth-score` scores both and writes its table, JSON and
plot; `saelab synth score` prints the table; experiments/synth.toml validates, full and quick."""

from __future__ import annotations

import json

import pytest

from saelab import experiment, train
from saelab.cli import main
from saelab.synth import WorldConfig
from saelab.synth.config import ScoredSAE, SynthScoreConfig, SynthWorldConfig
from saelab.synth.report import run as score_run
from saelab.synth.run import run as world_run
from tests.peer_modules import peer

TINY = WorldConfig(num_features=256, hidden_dim=32, hierarchy_roots=2, correlation_rank=4, orthogonalize_steps=10)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    out = world_run(SynthWorldConfig(world=TINY, samples=8192, batch=1024, out=root / "w", progress=False))
    cfg = train.TrainConfig(
        data={"store": str(out / "store"), "batch_size": 512},
        sae={"architecture": "topk", "k": 4, "d_sae": 64},
        train={"name": "topk", "out": str(root / "runs"), "tokens": 8192, "wandb": "disabled", "progress": False},
    )
    run = train.run(cfg)
    return root, out, run.run_dir


def test_world_stage_saves_world_and_store(made):
    _, out, _ = made
    assert (out / "world" / "synthetic_model_config.json").exists()
    assert json.loads((out / "store" / "manifest.json").read_text())["n_tokens"] == 8192


def test_score_stage_scores_saelab_and_saelens_on_one_world(made):
    root, out, run_dir = made
    saelens = peer("sae_lens")
    from saelab.peers.saelens import SAELensTrainConfig
    from saelab.peers.saelens import run as peer_run

    assert saelens.__version__
    theirs = peer_run(
        SAELensTrainConfig(store=out / "store", k=4, expansion=2, tokens=4096, batch_size=512, out=root / "saelens")
    )
    cfg = SynthScoreConfig(
        world=out / "world",
        saes=[ScoredSAE(name="ours", path=run_dir), ScoredSAE(name="theirs", path=theirs, group="SAELens")],
        samples=3000,
        batch=1000,
        atoms_samples=512,
        out=root / "scores",
    )
    result = score_run(cfg)
    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == {"ours", "theirs"}
    for r in rows.values():
        assert 0 <= r["f1"] <= 1 and 0 < r["mcc"] <= 1 and r["n_samples"] == 3000
        assert r["sae_l0"] == pytest.approx(4, abs=0.01)  # TopK: exactly k per sample
        assert set(r["atoms"]) >= {"coherence", "uniqueness", "q_star", "lasso_precision"}
    assert result["truth"]["l0"] > 1 and 0 < result["truth"]["coherence"] < 1
    md = (root / "scores" / "scores.md").read_text()
    assert "| ours |" in md and "| true features |" in md
    assert (root / "scores" / "f1_mcc_vs_l0.png").stat().st_size > 1000
    assert json.loads((root / "scores" / "scores.json").read_text())["rows"][0]["name"] == "ours"


def test_cli_score_prints_the_table(made, capsys):
    root, out, run_dir = made
    args = ["synth", "score", str(out / "world"), str(run_dir), "--samples", "2000", "--atoms-samples", "0"]
    assert main([*args, "--out", str(root / "cli")]) == 0
    printed = capsys.readouterr().out
    assert f"| {run_dir.name} |" in printed and "scores.json" in printed


def test_cli_train_trains_on_the_world_and_scores(made, tmp_path, capsys):
    root, out, _ = made
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        f"""
[data]
batch_size = 512
[sae]
architecture = "batchtopk"
k = 4
d_sae = 64
[train]
name = "cli"
out = "{tmp_path / "runs"}"
tokens = 4096
wandb = "disabled"
progress = false
"""
    )
    assert main(["synth", "train", str(out), str(cfg), "--samples", "2000"]) == 0
    printed = capsys.readouterr().out
    assert "cli (" in printed and "F1 " in printed and "dead " in printed
    assert (tmp_path / "runs" / "cli" / "sae" / "cfg.json").exists()


def test_cli_generate_quick_writes_a_small_world(tmp_path, capsys):
    assert main(["synth", "generate", "--quick", "--out", str(tmp_path / "g")]) == 0
    store = json.loads((tmp_path / "g-quick" / "store" / "manifest.json").read_text())
    assert store["n_tokens"] == 65_536 and store["d_model"] == 192
    assert "world:" in capsys.readouterr().out


@pytest.mark.parametrize("quick", [False, True])
def test_experiment_file_validates(quick):
    name, stages = experiment.load("experiments/synth.toml", quick=quick)
    kinds = [s.kind for s in stages]
    assert kinds == ["synth-world", "train-multi", "saelens-train", "saelens-train", "synth-score"]
    score = stages[-1].config
    assert len(score.saes) == 9 and all(str(s.path).startswith("checkpoints/" + name) for s in score.saes)
