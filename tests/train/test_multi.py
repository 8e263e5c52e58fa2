"""Several SAEs in one run: the same parameters and losses as separate runs, exact resume, normal sub-runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saelab import train
from saelab.runtime.rundir import RunDir
from saelab.sae import load_sae
from saelab.store import StoreWriter
from saelab.train import multi
from saelab.train.multi import MultiTrainConfig, load_multi_run_config
from tests.train.same_run import assert_close_params, assert_same_run, without_speed

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
D, CONTEXT, WINDOWS = 8, 16, 48
# Two TopK SAEs whose steps are the same function (stacked: one vmap), a ReLU SAE of another width, and a TopK
# SAE of the same width at another k, on another hook and learning rate: every way SAEs can differ.
SAES = [
    {"name": "a", "sae": {"k": 4}},
    {"name": "b", "sae": {"k": 4}, "train": {"seed": 1}},
    {"name": "relu", "sae": {"architecture": "relu", "l1_coefficient": 0.3, "expansion": 4}},
    {"name": "k2", "hook": HOOKS[1], "sae": {"k": 2}, "optim": {"lr": 1e-3}},
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Two hooks of heavy-tailed synthetic activations (d 8), BOS at each window's first position."""
    rng = np.random.default_rng(0)
    n = CONTEXT * WINDOWS
    pos = np.tile(np.arange(CONTEXT), WINDOWS)
    tokens = rng.integers(3, 90, n)
    tokens[pos == 0] = 1
    acts = {h: (rng.standard_normal((n, D)) * rng.gamma(2.0, 1.0, (n, 1))).astype(np.float32) for h in HOOKS}
    path = tmp_path_factory.mktemp("multi") / "store"
    meta = {"model": "synthetic", "weights_hash": "abc", "context": CONTEXT, "bos_id": 1}
    w = StoreWriter.create_or_resume(path, meta=meta, hooks=HOOKS, d_model=D, dtype="float32", shard_tokens=112)
    w.append(acts, tokens=tokens, doc=np.repeat(np.arange(WINDOWS), CONTEXT), pos=pos)
    w.finalize()
    return path


def _cfg(store: Path, out: Path, name: str, saes=SAES, **fields) -> MultiTrainConfig:
    """12 steps of 64 tokens, metrics and a checkpoint every 4 steps."""
    return MultiTrainConfig(
        data={"store": str(store), "batch_size": 64, "hook": HOOKS[0]},
        sae={"architecture": "topk", "expansion": 2},
        train={
            "name": name,
            "out": str(out),
            "tokens": 768,
            "log_every": 4,
            "checkpoint_every": 4,
            "wandb": "disabled",
            "progress": False,
        },
        saes=saes,
        **fields,
    )


@pytest.fixture(scope="module")
def together(store, tmp_path_factory) -> multi.MultiTrainResult:
    return multi.run(_cfg(store, tmp_path_factory.mktemp("runs"), "together", stack=True))


def _close(a: np.ndarray, b: np.ndarray, what: str) -> None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
    assert err <= 1e-5, f"{what}: relative difference {err:.2e}"


def test_saes_trained_together_match_separate_runs(together, tmp_path) -> None:
    cfg = load_multi_run_config(together.run_dir)
    assert list(together.saes) == ["a", "b", "relu", "k2"]
    for member, mcfg in zip(cfg.saes, cfg.members(), strict=True):
        elsewhere = mcfg.train.model_copy(update={"name": f"alone-{member.name}", "out": tmp_path})
        alone = train.run(mcfg.model_copy(update={"train": elsewhere}))
        mine = together.saes[member.name]
        assert mine.steps == alone.steps == 12
        assert_close_params(mine, alone, f"{member.name}.")
        rows, ref = RunDir(mine.run_dir).read_metrics(), RunDir(alone.run_dir).read_metrics()
        assert [r["step"] for r in rows] == [r["step"] for r in ref] == [4, 8, 12]
        for key in ("loss", "mse", "l0", "explained_variance", "sparsity_loss", "aux_loss"):
            _close([r[key] for r in rows], [r[key] for r in ref], f"{member.name} {key}")


def test_equal_steps_stack_and_the_others_do_not(together) -> None:
    cfg = load_multi_run_config(together.run_dir)
    cfgs = cfg.members()
    hooks = [0, 0, 0, 1]
    groups = multi.group(cfgs, hooks, [1.0] * 4, stack=True)
    assert [(g.members, g.stacked) for g in groups] == [((0, 1), True), ((2,), False), ((3,), False)]
    assert all(not g.stacked for g in multi.group(cfgs, hooks, [1.0] * 4, stack=False))
    a, b = together.saes["a"].params, together.saes["b"].params
    assert not np.allclose(a.W_enc, b.W_enc)  # stacked, yet each its own seed and parameters


def test_killed_multi_run_resumes_bitwise(store, together, tmp_path) -> None:
    cfg = _cfg(store, tmp_path, "split", stack=True)
    part = multi.run(cfg, stop_at_step=6)  # a checkpoint at step 4 and at the stop
    assert part.steps == 6 and not any(r.export_dir.exists() for r in part.saes.values())
    # a kill while saving: one SAE's step-6 checkpoint never got written; all restart from step 4
    RunDir(part.saes["relu"].run_dir).checkpoints.joinpath("6").rename(tmp_path / "lost")
    resumed = multi.run(load_multi_run_config(part.run_dir), resume=True)
    assert resumed.start_step == 4 and resumed.steps == 12
    for name, full in together.saes.items():
        assert_same_run(full, resumed.saes[name], f"{name}.")


def test_each_sae_is_a_normal_run(together) -> None:
    parent = RunDir(together.run_dir)
    assert parent.is_multi() and not parent.is_run()
    for name, r in together.saes.items():
        sub = parent.member(name)
        assert sub.root == r.run_dir and sub.is_run()
        assert train.load_run_config(sub.root).train.name == f"together/{name}"
        sae = load_sae(sub.root)
        assert sae.cfg.d_sae == (32 if name == "relu" else 16)
        assert sae.metadata["hook_name"] == (HOOKS[1] if name == "k2" else HOOKS[0])


def test_config_errors_name_the_sae_and_the_fix(store, tmp_path) -> None:
    with pytest.raises(ValueError, match="train.tokens cannot differ"):
        _cfg(store, tmp_path, "x", [{"name": "a", "train": {"tokens": 10}}])
    with pytest.raises(ValueError, match="SAE names repeat"):
        _cfg(store, tmp_path, "x", [{"name": "a"}, {"name": "a"}])
    with pytest.raises(ValueError, match="(?s)SAE 'r'.*l1_coefficient does not apply to topk"):
        _cfg(store, tmp_path, "x", [{"name": "r", "sae": {"l1_coefficient": 1.0}}])  # topk has no L1
    with pytest.raises(ValueError, match="plain directory name"):
        _cfg(store, tmp_path, "x", [{"name": "../up"}])
    with pytest.raises(ValueError, match="Extra inputs"):
        _cfg(store, tmp_path, "x", [{"name": "a", "lr": 1.0}])


def test_saelab_train_takes_a_multi_sae_toml_and_resumes_it(store, tmp_path, capsys, monkeypatch) -> None:
    from saelab.cli import main

    monkeypatch.setenv("WANDB_SILENT", "true")
    f = tmp_path / "multi.toml"
    f.write_text(f"""
[data]
store = "{store}"
batch_size = 64
hook = "{HOOKS[0]}"
[sae]
architecture = "topk"
k = 2
expansion = 2
[train]
name = "cli"
out = "{tmp_path}"
tokens = 512
log_every = 4
checkpoint_every = 4
wandb = "offline"
progress = false
[[saes]]
name = "s0"
[[saes]]
name = "s1"
train = {{ seed = 1 }}
""")
    assert main(["train", str(f), "--set", "train.tokens=256"]) == 0
    out = capsys.readouterr().out
    assert f"multi-SAE run {tmp_path / 'cli'}: 2 SAEs, 4 steps" in out and "s0:" in out and "s1:" in out
    for name in ("s0", "s1"):  # each SAE its own export and its own offline wandb run
        sub = RunDir(tmp_path / "cli" / name)
        assert sub.sae.joinpath("cfg.json").exists()
        run_id = sub.wandb_id.read_text().strip()
        assert [p.name.endswith(run_id) for p in sub.wandb.glob("offline-run-*")] == [True]
    assert main(["train", str(f)]) == 2  # the run exists
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "cli")]) == 0
    assert "4 steps" in capsys.readouterr().out


def test_a_single_run_is_the_one_sae_case_of_the_multi_loop(store, tmp_path) -> None:
    """One loop: a single-SAE run and a multi-SAE run of that one SAE train bit for bit the same."""
    one = multi.run(_cfg(store, tmp_path, "one", saes=[SAES[2]]))
    mcfg = load_multi_run_config(one.run_dir).members()[0]
    alone = train.run(mcfg.model_copy(update={"train": mcfg.train.model_copy(update={"name": "alone"})}))
    mine = one.saes["relu"]
    for field, a, b in zip(mine.params._fields, mine.params, alone.params, strict=True):
        if b is not None:
            assert np.array_equal(np.asarray(a), np.asarray(b)), f"{field} differs"
    assert without_speed(RunDir(mine.run_dir).read_metrics()) == without_speed(RunDir(alone.run_dir).read_metrics())
