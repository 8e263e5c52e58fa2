"""Distributed flags and launcher detection (no runtime is started here: those cases return or raise first)."""

from __future__ import annotations

import argparse

import pytest

from saelab.runtime.distributed import DistributedConfig, add_flags, initialize, initialize_from_args, launcher


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_flags(p)
    return p.parse_args(argv)


def test_flags_parse_into_the_config_and_no_flags_mean_one_process(monkeypatch) -> None:
    for var in (
        "SLURM_NTASKS",
        "SLURM_NPROCS",
        "OMPI_COMM_WORLD_SIZE",
        "TPU_WORKER_HOSTNAMES",
        "JAX_COORDINATOR_ADDRESS",
    ):
        monkeypatch.delenv(var, raising=False)
    ns = _parse("--coordinator", "10.0.0.1:1234", "--num-processes", "4", "--process-id", "3")
    assert (ns.dist_coordinator, ns.dist_num_processes, ns.dist_process_id, ns.dist_distributed) == (
        "10.0.0.1:1234",
        4,
        3,
        "auto",
    )
    assert initialize_from_args(_parse()) is False  # nothing asks for a runtime
    assert initialize_from_args(argparse.Namespace()) is False  # a command without the flags


def test_contradictory_or_impossible_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="contradicts"):
        initialize_from_args(_parse("--distributed", "off", "--num-processes", "2"))
    with pytest.raises(ValueError, match="below --num-processes"):
        initialize(DistributedConfig(coordinator="127.0.0.1:1", num_processes=2, process_id=2))
    with pytest.raises(ValueError, match="HOST:PORT"):
        initialize(DistributedConfig(coordinator="localhost", num_processes=2, process_id=0))
    with pytest.raises(SystemExit):
        _parse("--distributed", "maybe")


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({"SLURM_NTASKS": "16", "SLURM_STEP_NODELIST": "gpu[01-02]"}, "slurm"),
        ({"SLURM_NTASKS": "1", "SLURM_STEP_NODELIST": "gpu01"}, None),  # one task: no runtime
        ({"OMPI_COMM_WORLD_SIZE": "8"}, "openmpi"),
        ({"TPU_WORKER_HOSTNAMES": "t1k-0,t1k-1,t1k-2,t1k-3"}, "tpu"),
        ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),  # a single-host TPU VM
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, "env"),
        ({}, None),
    ],
)
def test_launcher_detection(env, want) -> None:
    assert launcher(env) == want
