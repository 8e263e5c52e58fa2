"""`--config FILE.toml` and `--set key=value` on every computing command: file, then --set, then flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from saelab.atoms.run import AtomsConfig
from saelab.circuits.config import CircuitsConfig, load_config
from saelab.cli import build_parser, main
from saelab.evals import EvalConfig
from saelab.harvest import HarvestConfig
from saelab.inspect.config import InspectConfig
from saelab.runtime.cliargs import config_from_args, parse_value
from saelab.select.bench import BenchConfig
from saelab.select.config import SelectConfig


def _cfg(model, argv: list[str]):
    return config_from_args(model, build_parser().parse_args(argv))


def _toml(tmp_path: Path, text: str, name: str = "c.toml") -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def test_harvest_reads_the_file_then_set_then_flags(tmp_path) -> None:
    f = _toml(tmp_path, 'hooks = ["blocks.2.hook_resid_post"]\ntokens = 1000\nbatch = 4\ncorpus = "wikitext-2"\n')
    cfg = _cfg(HarvestConfig, ["harvest", "--config", f])
    assert (cfg.hooks, cfg.tokens, cfg.batch, cfg.corpus) == (["blocks.2.hook_resid_post"], 1000, 4, "wikitext-2")
    assert cfg.context == HarvestConfig.model_fields["context"].default  # untouched fields keep their defaults
    cfg = _cfg(HarvestConfig, ["harvest", "--config", f, "--set", "tokens=2000", "--set", "dtype=float32"])
    assert (cfg.tokens, cfg.dtype, cfg.batch) == (2000, "float32", 4)
    cfg = _cfg(HarvestConfig, ["harvest", "--config", f, "--set", "tokens=2000", "--batch", "8", "--hooks", "a,b"])
    assert (cfg.tokens, cfg.batch, cfg.hooks) == (2000, 8, ["a", "b"])


def test_a_table_named_after_the_command_is_read_too(tmp_path) -> None:
    f = _toml(tmp_path, '[eval]\nsae = "checkpoints/x"\ntokens = 512\nsplit = "all"\n')
    cfg = _cfg(EvalConfig, ["eval", "--config", f])
    assert (cfg.sae, cfg.tokens, cfg.split) == (Path("checkpoints/x"), 512, "all")
    assert _cfg(EvalConfig, ["eval", "checkpoints/y", "--config", f]).sae == Path("checkpoints/y")  # positional wins


def test_every_computing_command_takes_config_and_set(tmp_path) -> None:
    f = _toml(tmp_path, 'sae = ["runs/a"]\nstore = "activations/s"\ntokens = 300\n', "atoms.toml")
    cfg = _cfg(AtomsConfig, ["atoms", "--config", f, "--set", "tokens=400"])
    assert (cfg.sae, cfg.store, cfg.tokens) == ([Path("runs/a")], Path("activations/s"), 400)
    assert _cfg(AtomsConfig, ["atoms", "runs/b", "--config", f]).sae == [Path("runs/b")]

    f = _toml(tmp_path, 'sae = "runs/a"\nstore = "activations/s"\ntokens = 4096\n', "inspect.toml")
    cfg = _cfg(InspectConfig, ["inspect", "--config", f, "--set", "top_k=3"])
    assert (cfg.sae, cfg.tokens, cfg.top_k) == (Path("runs/a"), 4096, 3)

    f = _toml(tmp_path, '[circuits]\ntask = "greater-than"\nprompts = 12\n', "circuits.toml")
    cfg = _cfg(CircuitsConfig, ["circuits", "--config", f, "--set", "seed=3"])
    assert (cfg.task, cfg.prompts, cfg.seed) == ("greater-than", 12, 3)
    assert _cfg(CircuitsConfig, ["circuits", "ioi", "--config", f]).task == "ioi"
    assert load_config(f, prompts=None, seed=3) == cfg

    f = _toml(tmp_path, 'pool = "p.jsonl"\ntarget = "t.jsonl"\nmethod = "bm25"\n', "select.toml")
    cfg = _cfg(SelectConfig, ["select", "--config", f, "--set", "ratio=0.2"])
    assert (cfg.pool, cfg.method, cfg.ratio) == (Path("p.jsonl"), "bm25", 0.2)
    f = _toml(tmp_path, "max_labels = 3\nseed = 7\n", "bench.toml")
    cfg = _cfg(BenchConfig, ["select", "bench", "--config", f, "--set", "seed=8"])
    assert (cfg.max_labels, cfg.seed) == (3, 8)


@pytest.mark.parametrize(
    ("argv", "text", "message"),
    [
        (["harvest"], "tokens = 10\nbogus = 1\n", r"c.toml: unknown option\(s\) \['bogus'\]; valid ones: model, hooks"),
        (["harvest", "--set", "nope=1"], "", r"--set: unknown option\(s\) \['nope'\]"),
        (["harvest", "--set", "tokens"], "", "--set expects key=value"),
        (["harvest", "--tokens", "5", "--set", "tokens=6"], "", r"tokens \(--set tokens=... and --tokens\)"),
        (["harvest"], "tokens = 10\n", "harvest needs --hooks: give it on the command line, or in a --config"),
        (["eval"], "tokens = 10\n", "eval needs RUN_OR_SAE_DIR"),
        (["harvest", "--set", "hooks=['a']"], "tokens = -1\n", r"invalid harvest options \(from .*c.toml"),
        (["harvest"], "[[stages]]\nkind = 'harvest'\n", "experiment file"),
        (["harvest"], "tokens = = 1\n", "not valid TOML"),
    ],
)
def test_bad_options_name_the_problem(tmp_path, argv: list[str], text: str, message: str) -> None:
    model = EvalConfig if argv[0] == "eval" else HarvestConfig
    with pytest.raises(ValueError, match=message):
        _cfg(model, [*argv, "--config", _toml(tmp_path, text)])


def test_select_takes_pool_and_target_from_the_file_or_names_them(tmp_path, capsys) -> None:
    assert main(["select", "--method", "bm25"]) == 2
    assert (
        "select needs --pool and --target: give them on the command line, or in a --config" in capsys.readouterr().err
    )
    (tmp_path / "t.jsonl").write_text('{"text": "set a timer"}\n')
    f = _toml(tmp_path, f'pool = "{tmp_path / "absent.jsonl"}"\ntarget = "{tmp_path / "t.jsonl"}"\nmethod = "bm25"\n')
    assert main(["select", "--config", f]) == 2  # past the option check, to the pool file itself
    assert "absent.jsonl" in capsys.readouterr().err


def test_missing_config_file_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config file .*absent.toml does not exist"):
        _cfg(HarvestConfig, ["harvest", "--config", str(tmp_path / "absent.toml")])


def test_set_values_are_toml_or_bare_text() -> None:
    assert parse_value("3") == 3 and parse_value("1e-3") == 1e-3 and parse_value("true") is True
    assert parse_value("['a', 'b']") == ["a", "b"] and parse_value("'x y'") == "x y"
    assert parse_value("blocks.6.hook_resid_post") == "blocks.6.hook_resid_post"
