"""The command line grouped by stage: `saelab --help` lists commands in the order data flows, `saelab GROUP SUB`
reaches each subcommand while `saelab train CONFIG` / `saelab inspect RUN` / `saelab circuits TASK` keep their
positional argument, and every old name still runs, saying its new name once on stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from saelab.cli import RENAMED, SUBCOMMANDS, build_parser, main, route

STAGES = [
    "model",
    "harvest",
    "store",
    "train",
    "eval",
    "inspect",
    "splice",
    "circuits",
    "atoms",
    "select",
    "sae",
    "synth",
]


def test_help_lists_commands_in_data_flow_order(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    entries = [ln.split() for ln in out.split("COMMAND\n", 1)[1].splitlines() if ln.startswith("    ") and ln[4] != " "]
    listed = [e[0] for e in entries]
    assert list(dict.fromkeys(c for c in listed if c in STAGES)) == STAGES
    for group, subs in SUBCOMMANDS.items():  # each subcommand listed right under its group
        i = listed.index(group)
        assert [e[:2] for e in entries[i + 1 : i + 1 + len(subs)]] == [[group, name] for name in subs]
    assert not set(RENAMED) & set(listed)  # old names run but are not advertised


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_old_names_run_the_new_command_and_say_so(old: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main([old, "--help"])
    assert e.value.code == 0
    captured = capsys.readouterr()
    new = " ".join(RENAMED[old])
    assert captured.err == f"saelab: `saelab {old}` is now `saelab {new}`\n"
    assert captured.out.startswith(f"usage: saelab {new} ")
    with pytest.raises(SystemExit):
        main([*RENAMED[old], "--help"])
    assert capsys.readouterr().err == ""  # the new name says nothing extra


def test_group_commands_keep_their_positional_arguments() -> None:
    p = build_parser()
    assert route(["train", "cfg.toml", "--set", "train.tokens=1"]).argv[0] == "train"
    ns = p.parse_args(route(["train", "cfg.toml", "--set", "train.tokens=1"]).argv)
    assert (ns.command, ns.config, ns.set) == ("train", "cfg.toml", ["train.tokens=1"])
    ns = p.parse_args(route(["train", "plan", "cfg.toml", "--devices", "8"]).argv)
    assert (ns.command, ns.config, ns.devices) == ("train plan", "cfg.toml", 8)
    ns = p.parse_args(route(["inspect", "checkpoints/demo", "--store", "s"]).argv)
    assert (ns.command, ns.sae, str(ns.store)) == ("inspect", "checkpoints/demo", "s")
    ns = p.parse_args(route(["inspect", "feature", "checkpoints/demo", "7", "--store", "s"]).argv)
    assert (ns.command, ns.sae, ns.latent) == ("inspect feature", "checkpoints/demo", 7)
    ns = p.parse_args(route(["circuits", "ioi", "--model", "m"]).argv)
    assert (ns.command, ns.task) == ("circuits", "ioi")
    ns = p.parse_args(route(["splice", "explain", "run", "Hello"]).argv)
    assert (ns.command, ns.splice_cmd, ns.prompt) == ("splice", "explain", "Hello")
    assert route(["train", "--resume", "plan"]).argv == ["train", "--resume", "plan"]  # only the word after GROUP


def _circuits_run(path, auc: float) -> None:
    path.mkdir(parents=True)
    result = {"config": {"task": "ioi", "recipe": "saelab"}, "auc": {"sae-codes": auc}, "runtime_s": {"sae-codes": 2.0}}
    (path / "circuits.json").write_text(json.dumps(result))


def test_circuits_table_subcommand_and_its_old_module_name(tmp_path, capsys) -> None:
    _circuits_run(tmp_path / "ioi" / "seed1", 0.7)
    _circuits_run(tmp_path / "ioi" / "seed2", 0.8)
    assert main(["circuits", "table", str(tmp_path), "--out", str(tmp_path / "t.md")]) == 0
    out = capsys.readouterr().out
    assert "| ioi |" in out and "0.750 +- 0.050 (2)" in out
    assert (tmp_path / "t.md").read_text().strip() == out.strip()
    old = subprocess.run(
        [sys.executable, "-m", "saelab.circuits.table", str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert (
        old.stdout == out and old.stderr == "saelab: `python -m saelab.circuits.table` is now `saelab circuits table`\n"
    )
