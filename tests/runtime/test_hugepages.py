"""The huge-page re-execution: when it sets the glibc tunable, when it leaves the environment alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from saelab.runtime import hugepages
from saelab.runtime.hugepages import TUNABLE, asked, hugepage_env, thp_mode


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("always [madvise] never\n", "madvise"),
        ("[always] madvise never\n", "always"),
        ("always madvise [never]", "never"),
    ],
)
def test_thp_mode_reads_the_bracketed_word(tmp_path: Path, text: str, mode: str) -> None:
    path = tmp_path / "enabled"
    path.write_text(text)
    assert thp_mode(path) == mode


def test_thp_mode_is_none_without_the_file(tmp_path: Path) -> None:
    assert thp_mode(tmp_path / "absent") is None


def test_asked_gets_the_tunable_and_keeps_other_tunables() -> None:
    assert hugepage_env({"A": "1"}, "madvise", True, wanted=True) == {"A": "1", "GLIBC_TUNABLES": TUNABLE}
    got = hugepage_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "always", True, wanted=True)
    assert got == {"GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{TUNABLE}"}


def test_off_unless_asked() -> None:
    assert hugepage_env({}, "madvise", True) is None  # no command gets it by default, train included
    assert hugepage_env({}, "madvise", True, wanted=False) is None
    assert hugepage_env({"SAELAB_HUGEPAGES": "1"}, "madvise", True) is not None


def test_the_flag_is_found_among_options_only() -> None:
    assert asked(["train", "x.toml", "--hugepages"])
    assert not asked(["train", "x.toml"])
    assert not asked(["train", "--", "--hugepages"])  # after `--` it is an argument, not an option


def test_train_help_states_the_flag(capsys) -> None:
    from saelab.cli import build_parser

    p = build_parser()
    assert p.parse_args(["train", "x.toml", "--hugepages"]).hugepages
    assert not p.parse_args(["train", "x.toml"]).hugepages
    with pytest.raises(SystemExit):
        p.parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--hugepages" in text and "off by default" in text


def test_state_says_whether_this_process_has_the_tunable(monkeypatch) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", f"glibc.malloc.arena_max=2:{TUNABLE}")
    assert hugepages.state().malloc_hugetlb and hugepages.state().thp == thp_mode()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")
    assert not hugepages.state().malloc_hugetlb


@pytest.mark.parametrize(
    ("env", "mode", "glibc_ok"),
    [
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", True),  # the user chose
        ({"SAELAB_HUGEPAGES": "0", "X": "1"}, "always", True),  # turned off, even where asked
        ({"SAELAB_HUGEPAGES": "0"}, "madvise", True),  # turned off
        ({}, "never", True),  # THP off in the kernel
        ({}, None, True),  # not Linux
        ({}, "madvise", False),  # glibc < 2.35 or not glibc
    ],
)
def test_env_is_left_alone(env: dict, mode: str | None, glibc_ok: bool) -> None:
    assert hugepage_env(env, mode, glibc_ok, wanted=True) is None


@pytest.mark.skipif(
    thp_mode() not in ("madvise", "always") or not hugepages.glibc_supports_hugetlb(),
    reason="needs Linux with THP in madvise or always mode and glibc >= 2.35",
)
def test_a_process_reexecutes_once_with_the_tunable(tmp_path: Path) -> None:
    script = tmp_path / "entry.py"
    script.write_text(
        "import os\n"
        "print('start', flush=True)\n"
        "from saelab.runtime.hugepages import reexec_with_hugepages\n"
        "reexec_with_hugepages(wanted=True)\n"
        "print('tunables', os.environ.get('GLIBC_TUNABLES'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "SAELAB_HUGEPAGES")}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["start", "start", f"tunables {TUNABLE}"]
    env["SAELAB_HUGEPAGES"] = "0"
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["start", "tunables None"]
