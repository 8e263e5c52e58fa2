"""NaN and Inf in a store, in a run, in an SAE: each is named where it is, stops what would spread it, and a
rerun after the fix (or with the explicit skip option) completes."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from saelab import train
from saelab.runtime.finite import NonFiniteError
from saelab.sae import load_sae
from saelab.store import ActivationLoader, ActivationStore, StoreWriter, verify_store
from saelab.train.guard import DIVERGENCE_FACTOR, Guard
from tests.inspect.inspect_helpers import HOOK, write_sae, write_store

from .conftest import cli, poison, train_cfg

ROW = 333  # a store row (not a BOS: 333 % 16 != 0) that the tests damage


def _sets(cfg: train.TrainConfig) -> list[str]:
    """--set arguments reproducing `cfg` on the command line."""
    values = cfg.model_dump(mode="json", exclude_none=True).items()
    return [a for sec, kv in values for k, v in kv.items() for a in ("--set", f"{sec}.{k}={json.dumps(v)}")]


def _steps_with(store, row: int, steps: int) -> list[int]:
    """1-based steps of a 20-step run (batch 64, seed 0) whose batch holds store row `row`: the reference."""
    loader = ActivationLoader(ActivationStore(store), HOOK, 64, seed=0)
    return [s + 1 for s in range(steps) if row in loader.global_indices(s)]


def test_nan_store_is_named_by_verify_and_stops_training_without_export(store, tmp_path) -> None:
    shard, at = poison(store, ROW, np.nan)
    assert verify_store(store) == []  # checksums are consistent: the trap
    deep = cli("store", "verify", "--deep", str(store))
    assert deep.returncode == 1
    assert (
        f"{shard}: hook {HOOK}: 1 row(s) with NaN/Inf activations, first row {at} (store row {ROW}: nan)" in deep.stdout
    )
    assert "re-harvest" in deep.stdout

    cfg = train_cfg(store, tmp_path / "runs", "nan")
    p = cli("train", *_sets(cfg))  # the b_dec sample holds the row: stopped before the first step
    assert p.returncode == 2, p.stderr
    assert f"NaN/Inf activations at rows {ROW} (1 of the 600 sampled for the initial b_dec)" in p.stderr
    assert "saelab store verify --deep" in p.stderr and not (cfg.run_dir / "sae").exists()

    cfg = train_cfg(store, tmp_path / "runs", "nan", "train.b_dec_init='zeros'")
    bad = _steps_with(store, ROW, cfg.steps)[0]
    with pytest.raises(NonFiniteError) as e:
        train.run(cfg, overwrite=True)
    msg = str(e.value)
    assert f"non-finite step {bad} " in msg and f"store rows {ROW}" in msg
    assert "saelab store verify --deep" in msg and "nothing was exported" in msg
    assert "train.on_nonfinite='skip'" in msg
    run_dir = cfg.run_dir
    assert not (run_dir / "sae").exists()
    kept = sorted(int(d.name) for d in (run_dir / "checkpoints").iterdir() if d.name.isdigit())
    assert kept and max(kept) == (bad - 1) // 4 * 4  # the last checkpoint before the bad step, whole
    assert f"the last good checkpoint (step {max(kept)}) is kept" in msg

    shutil.rmtree(store)  # the fix: harvest again
    write_store(store)
    done = train.run(cfg, overwrite=True)
    assert done.steps == 20 and np.isfinite(np.asarray(load_sae(run_dir).params.W_dec)).all()


def test_inf_in_store_stops_at_its_step_and_skip_mode_counts_it(store, tmp_path) -> None:
    poison(store, ROW, np.inf)
    cfg = train_cfg(store, tmp_path, "inf", "train.b_dec_init='zeros'")
    steps = _steps_with(store, ROW, cfg.steps)
    with pytest.raises(NonFiniteError, match=rf"non-finite step {steps[0]} \(loss .*store rows {ROW}"):
        train.run(cfg)
    assert not (cfg.run_dir / "sae").exists()

    r = train.run(train_cfg(store, tmp_path, "skip", "train.on_nonfinite='skip'"))
    rows = [json.loads(line) for line in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["skipped_batches"] for m in rows) == len(steps)
    assert all(np.isfinite(m["loss"]) for m in rows)
    assert np.isfinite(np.asarray(load_sae(r.run_dir).params.W_enc)).all()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_store_statistics_count_nonfinite_values_and_training_refuses_them(tmp_path, dtype) -> None:
    acts = np.ones((64, 4), np.float32)
    acts[5, 1], acts[40, 0], acts[40, 3] = np.nan, np.inf, -np.inf
    w = StoreWriter.create_or_resume(tmp_path / "s", meta={}, hooks=[HOOK], d_model=4, dtype=dtype, shard_tokens=32)
    w.append({HOOK: acts}, np.arange(64), np.zeros(64, int), np.arange(64) % 16)
    w.finalize()
    assert ActivationStore(tmp_path / "s").stats(HOOK)["n_nonfinite"] == 3
    problems = verify_store(tmp_path / "s")
    assert [p.file for p in problems] == ["manifest.json"] and "count 3 NaN/Inf values" in problems[0].problem
    deep = {p.file: p.problem for p in verify_store(tmp_path / "s", deep=True)}
    assert (
        "1 row(s)" in deep["shard_000000.safetensors"]
        and "first row 5 (store row 5: nan)" in deep["shard_000000.safetensors"]
    )
    assert "first row 8 (store row 40: inf)" in deep["shard_000001.safetensors"]
    cfg = train_cfg(tmp_path / "s", tmp_path, "r", "train.tokens=128", "sae.k=2")
    with pytest.raises(NonFiniteError, match=rf"holds 3 NaN/Inf activation values in hook {HOOK}.*verify --deep"):
        train.run(cfg)


def test_nan_producing_learning_rate_stops_the_run_and_a_sane_one_completes(store, tmp_path) -> None:
    cfg = train_cfg(store, tmp_path / "runs", "lr", "optim.lr=1e30")
    with pytest.raises(NonFiniteError, match=r"non-finite step \d+ .*the update overflowed: lower optim.lr"):
        train.run(cfg)
    assert not (cfg.run_dir / "sae").exists()
    train.run(train_cfg(store, tmp_path / "runs", "lr"), overwrite=True)
    assert np.isfinite(np.asarray(load_sae(cfg.run_dir).params.W_enc)).all()


def test_divergence_is_a_warning_naming_the_step() -> None:
    g = Guard("error", rows=lambda s: np.arange(4), bad_rows=lambda r: r[:0], hint=lambda: "")
    flat = [{"nonfinite": 0.0, "loss": 1.0, "grad_norm": 1.0}] * 30
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g.check(0, flat + [{"nonfinite": 0.0, "loss": DIVERGENCE_FACTOR * 0.9, "grad_norm": 1.0}])  # below: quiet
    with pytest.warns(RuntimeWarning, match=r"loss 50 at step 32 is \d+x its running level .*diverging"):
        g.check(31, [{"nonfinite": 0.0, "loss": 50.0, "grad_norm": 1.0}])


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_sae_with_nonfinite_weights_is_refused_naming_the_tensor(tmp_path, value) -> None:
    sae = write_sae(tmp_path / "sae")
    w = load_file(str(sae / "sae_weights.safetensors"))
    w["b_dec"][2] = value
    save_file(w, str(sae / "sae_weights.safetensors"))
    with pytest.raises(
        NonFiniteError, match=r"tensor b_dec holds 1 non-finite value\(s\) \(first: (nan|inf) at index \[2\]"
    ):
        load_sae(sae)
    from saelab.atoms.dictionary import load_dictionary
    from saelab.inspect.compat import open_inputs

    with pytest.raises(NonFiniteError, match="b_dec"):
        open_inputs(sae, tmp_path / "store")  # inspect
    with pytest.raises(NonFiniteError, match="b_dec"):
        load_dictionary(sae)  # atoms
    from saelab.evals import EvalConfig
    from saelab.evals import run as evaluate

    with pytest.raises(NonFiniteError, match="b_dec"):
        evaluate(EvalConfig(sae=sae))  # eval
