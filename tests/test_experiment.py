"""`saelab run`: stage order, skipping, resuming, redoing on a changed config, sweeps, quick mode, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from saelab import experiment
from saelab.cli import main
from saelab.data.texts import TEXTS


class CountConfig(BaseModel):
    value: int
    out: Path


CALLS: list[tuple[str, bool]] = []


def _count(cfg: CountConfig, redo: bool) -> dict:
    CALLS.append((str(cfg.out), redo))
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(str(cfg.value))
    return {"value": cfg.value}


@pytest.fixture
def fake_kind(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(experiment.STAGES, "count", experiment.StageKind(CountConfig, _count, lambda c: c.out))
    CALLS.clear()
    return tmp_path


def _write(path: Path, value: int = 1) -> Path:
    path.write_text(f"""
[experiment]
name = "t"
[[stages]]
kind = "count"
id = "a"
value = {value}
out = "out/{{name}}/a.txt"
quick = {{ value = 99 }}
[[stages]]
kind = "count"
value = 2
out = "out/{{name}}/b-{{layer}}.txt"
sweep = {{ layer = [3, 7] }}
""")
    return path


def test_stages_run_in_order_then_skip_then_redo_on_change(fake_kind) -> None:
    f = _write(fake_kind / "e.toml")
    ids = [stage.id for stage, _ in experiment.run(f, log=lambda *_: None)]
    assert ids == ["a", "count-layer3", "count-layer7"]
    assert CALLS == [("out/t/a.txt", False), ("out/t/b-3.txt", False), ("out/t/b-7.txt", False)]
    assert json.loads((fake_kind / "results/t/stages/a.json").read_text())["config"]["value"] == 1
    CALLS.clear()
    assert [r for _, r in experiment.run(f, log=lambda *_: None)] == ["skipped"] * 3
    assert CALLS == []
    _write(f, value=5)
    experiment.run(f, log=lambda *_: None)
    assert CALLS == [("out/t/a.txt", True)]  # only the changed stage, told to replace its outputs
    assert (fake_kind / "out/t/a.txt").read_text() == "5"


def test_missing_output_reruns_and_quick_uses_its_own_names(fake_kind) -> None:
    f = _write(fake_kind / "e.toml")
    experiment.run(f, log=lambda *_: None)
    (fake_kind / "out/t/b-7.txt").unlink()
    CALLS.clear()
    experiment.run(f, log=lambda *_: None)
    assert CALLS == [("out/t/b-7.txt", False)]
    CALLS.clear()
    experiment.run(f, quick=True, log=lambda *_: None)
    assert CALLS[0] == ("out/t-quick/a.txt", False)
    assert (fake_kind / "out/t-quick/a.txt").read_text() == "99"


@pytest.mark.parametrize(
    "body, message",
    [
        ('[[stages]]\nkind = "nope"\n', "unknown stage kind 'nope'"),
        ('[[stages]]\nkind = "count"\nvalue = "x"\nout = "o"\n', "invalid config"),
        ('[[stages]]\nkind = "count"\nvalue = 1\nout = "{oops}"\n', "placeholder {oops}"),
        ('[[stages]]\nkind = "count"\nvalue = 1\nout = "o"\nsweep = { a = [1, 2], b = [1] }\n', "one length"),
        ("[stagez]\n", "unknown top-level"),
    ],
)
def test_bad_experiment_files_are_refused_before_anything_runs(fake_kind, body, message) -> None:
    f = fake_kind / "bad.toml"
    f.write_text(body)
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")):
        experiment.run(f, log=lambda *_: None)
    assert CALLS == []


def test_harvest_train_eval_end_to_end_through_the_cli(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.toml").write_text("""
[experiment]
name = "tiny"
[[stages]]
kind = "harvest"
hooks = ["blocks.1.hook_resid_post"]
tokens = 4096
out = "activations/{name}"
[[stages]]
kind = "train"
[stages.data]
store = "activations/{name}"
batch_size = 512
[stages.sae]
expansion = 2
k = 8
[stages.train]
name = "{name}"
tokens = 10240
wandb = "disabled"
progress = false
[[stages]]
kind = "eval"
sae = "checkpoints/{name}"
tokens = 1024
batch = 8
progress = false
out = "results/{name}/eval.json"
""")
    assert main(["run", "x.toml"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "eval JSON: results/tiny/eval.json"
    r = json.loads((tmp_path / "results/tiny/eval.json").read_text())
    for key in ("explained_variance", "l0", "dead_fraction", "ce_loss_recovered", "kl_div"):
        assert key in r
    assert r["l0"] == pytest.approx(8.0)
    assert r["meta"]["hook"] == "blocks.1.hook_resid_post"
    assert (tmp_path / "results/tiny/eval.md").exists() and (tmp_path / "results/tiny/eval-density.png").exists()
    assert main(["run", "x.toml"]) == 0
    assert "skipped" in capsys.readouterr().out


@pytest.mark.parametrize("quick", [False, True])
def test_every_experiment_file_validates(quick: bool) -> None:
    files = [
        f for f in sorted((Path(__file__).parents[1] / "experiments").glob("*.toml")) if "[[stages]]" in f.read_text()
    ]
    assert len(files) >= 5
    for f in files:
        name, stages = experiment.load(f, quick=quick)
        assert stages and name.endswith("-quick") == quick


def test_every_stage_config_shares_the_one_base_and_lives_in_its_stages_config_module() -> None:
    from saelab.runtime.config import Config

    for kind, stage in experiment.STAGES.items():
        cls, module = stage.config, stage.config.__module__
        assert issubclass(cls, Config), kind
        assert cls.model_config["extra"] == "forbid" and cls.model_config["frozen"], kind
        if kind != "saelens-train":  # the SAELens peer is no saelab stage
            assert module.endswith(".config"), (kind, module)


def test_every_stage_not_run_says_why(fake_kind, capsys) -> None:
    f = _write(fake_kind / "e.toml")
    lines: list[str] = []
    experiment.run(f, only=["a"], log=lines.append)
    assert lines[2:] == ["[count-layer3] not named by --only; skipped", "[count-layer7] not named by --only; skipped"]
    (fake_kind / "d.toml").write_text("""
[[stages]]
kind = "eval"
sae = "checkpoints/none"
corpus = "text:absent/wiki.txt"
skip_missing = true
out = "results/d/eval.json"
""")
    lines.clear()
    result = experiment.run(fake_kind / "d.toml", log=lines.append)
    assert [r for _, r in result] == ["skipped"]
    assert "eval skipped: corpus file absent/wiki.txt is absent" in capsys.readouterr().out
    assert lines[-1] == "[eval] skipped: it wrote no results/d/eval.json (the reason is printed above)"
    assert not (fake_kind / "results/d/stages").exists()  # no marker: it runs once the corpus is there


def test_only_names_a_swept_stage_by_its_table_id_and_refuses_an_unknown_name(fake_kind) -> None:
    f = fake_kind / "s.toml"
    f.write_text("""
[[stages]]
kind = "count"
id = "a"
value = 1
out = "out/a.txt"
[[stages]]
kind = "count"
id = "b"
value = 2
out = "out/b-{layer}.txt"
sweep = { layer = [3, 7] }
""")
    lines: list[str] = []
    ran = [s.id for s, r in experiment.run(f, only=["b"], log=lines.append)]
    assert ran == ["b-layer3", "b-layer7"] and lines[0] == "[a] not named by --only; skipped"
    assert [s.id for s, _ in experiment.run(f, only=["b-layer7"], log=lambda *_: None)] == ["b-layer7"]
    with pytest.raises(ValueError, match=r"--only \['bb'\] names no stage.*'a', 'b', 'count'"):
        experiment.run(f, only=["bb"], log=lambda *_: None)


def test_experiment_strings_name_the_shipped_data_folder(fake_kind) -> None:
    (fake_kind / "p.toml").write_text("""
[[stages]]
kind = "count"
value = 1
out = "{data}/never-written.txt"
""")
    _, stages = experiment.load(fake_kind / "p.toml")
    assert stages[0].config.out == TEXTS / "never-written.txt"
    assert (TEXTS / "wikitext-2-valid.txt").is_file() and (TEXTS / "clinc150" / "train.jsonl").is_file()
