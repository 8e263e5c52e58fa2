"""The persistent compilation cache: where it goes, that only the command line turns it on, and only when asked."""

from __future__ import annotations

import importlib
from pathlib import Path

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from saelab.runtime import jaxcache


@pytest.fixture
def restore_jax_cache():
    before = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
    yield
    jax.config.update("jax_compilation_cache_dir", before[0])
    compilation_cache.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])


def test_cache_dir_from_env_default_and_off(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(jaxcache.ENV, raising=False)
    assert jaxcache.cache_dir() == Path("~/.cache/saelab/jax").expanduser()
    monkeypatch.setenv(jaxcache.ENV, str(tmp_path / "c"))
    assert jaxcache.cache_dir() == tmp_path / "c"
    monkeypatch.setenv(jaxcache.ENV, "off")
    assert jaxcache.cache_dir() is None and jaxcache.enable_compilation_cache() is None


def test_enable_sets_the_jax_option(monkeypatch, tmp_path, restore_jax_cache) -> None:
    monkeypatch.setenv(jaxcache.ENV, str(tmp_path / "jax"))
    assert jaxcache.enable_compilation_cache() == tmp_path / "jax"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax") and (tmp_path / "jax").is_dir()
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.2
    jax.jit(lambda x: x * 2 + 1)(1.0)  # compiled before the cache below is chosen: it must still start
    jaxcache.enable_compilation_cache(tmp_path / "jax2", min_compile_s=0)
    jax.jit(lambda x: jax.numpy.sin(x) * 3.5)(2.0)
    assert any((tmp_path / "jax2").iterdir())  # the program was written to disk


def test_requested_only_by_the_flag_or_the_variable(tmp_path) -> None:
    assert jaxcache.requested(False, {}) is None  # nobody asked: no process-wide cache
    assert jaxcache.requested(True, {}) == Path("~/.cache/saelab/jax").expanduser()
    assert jaxcache.requested(False, {jaxcache.ENV: str(tmp_path)}) == tmp_path
    assert jaxcache.requested(False, {jaxcache.ENV: "on"}) == Path("~/.cache/saelab/jax").expanduser()
    assert jaxcache.requested(True, {jaxcache.ENV: "off"}) is None


def test_circuits_run_leaves_the_cache_alone(monkeypatch, tmp_path, restore_jax_cache) -> None:
    from saelab.circuits.config import CircuitsConfig

    circuits_run = importlib.import_module("saelab.circuits.run")  # the module; the package exports run()

    monkeypatch.setenv(jaxcache.ENV, str(tmp_path / "jc"))
    before = jax.config.jax_compilation_cache_dir

    def stop(*a, **k):
        raise RuntimeError("stop at the model load")

    monkeypatch.setattr(circuits_run.Model, "load", stop)
    with pytest.raises(RuntimeError, match="stop"):
        circuits_run.run(CircuitsConfig(task="ioi", out=tmp_path / "o"))
    assert jax.config.jax_compilation_cache_dir == before  # a library call changes no process-wide state
    assert not (tmp_path / "jc").exists()


def test_the_command_line_turns_it_on_when_asked(monkeypatch, tmp_path, restore_jax_cache, capsys) -> None:
    from saelab.cli import build_parser

    p = build_parser()
    monkeypatch.delenv(jaxcache.ENV, raising=False)
    assert jaxcache.enable_from_args(p.parse_args(["circuits", "ioi"])) is None
    monkeypatch.setenv(jaxcache.ENV, str(tmp_path / "jc"))
    assert jaxcache.enable_from_args(p.parse_args(["circuits", "ioi", "--jax-cache"])) == tmp_path / "jc"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jc")
    with pytest.raises(SystemExit):
        p.parse_args(["circuits", "--help"])
    assert "--jax-cache" in capsys.readouterr().out
