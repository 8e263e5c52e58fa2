"""Harvest faults on SmolLM2: NaN and Inf activations (injected by a pure hook) are refused or skipped and
counted; a harvest SIGKILLed during its manifest update, or between a shard and its manifest, resumes to the
bytes of an uninterrupted one; so does a skip-mode harvest cut off mid-way."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.harvest import HarvestConfig, run
from saelab.models import Model
from saelab.runtime.finite import NonFiniteError
from saelab.store import ActivationStore, StoreWriter, store_info, verify_store

from .conftest import files, killed

HOOK = "blocks.1.hook_resid_post"
NAN_AT_ROW_1 = {HOOK: lambda x: x.at[1, 5, 0].set(jnp.nan)}  # window 1 of every batch, position 5, feature 0
# NaN in the windows whose own activation says so: the same windows whatever batch they fall in
NAN_BY_DATA = {HOOK: lambda x: x.at[:, 5, 0].set(jnp.where(x[:, 5, 0] > x[:, 6, 0], jnp.nan, x[:, 5, 0]))}


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.load("smollm2-135m")


def _cfg(out, **kw) -> HarvestConfig:
    return HarvestConfig(hooks=[HOOK], tokens=1024, context=64, batch=2, shard_tokens=256, out=out, **kw)


def test_nan_activation_stops_the_harvest_naming_hook_document_and_position(model, tmp_path) -> None:
    cfg = _cfg(tmp_path / "s")
    with pytest.raises(NonFiniteError) as e:
        run(cfg, model=model, progress=False, interventions=NAN_AT_ROW_1)
    doc = _docs_of_first_batch(model, cfg)[1, 5]
    msg = str(e.value)
    assert f"nan activation at hook {HOOK}, document {doc}, position 5 (window 1 of the stream, feature 0)" in msg
    assert "nothing of them was written" in msg and "on_nonfinite='skip'" in msg
    assert (tmp_path / "s" / "manifest.json").exists() and not list((tmp_path / "s").glob("shard_*"))

    # the explicit option: those windows left out and counted; what is stored is finite
    skipped = run(
        cfg.model_copy(update={"on_nonfinite": "skip"}), model=model, progress=False, interventions=NAN_AT_ROW_1
    )
    s = ActivationStore(skipped)
    assert s.manifest["skipped_windows"] == 8 and s.n_tokens == 8 * 64  # 16 windows, one of each pair
    assert s.stats(HOOK)["n_nonfinite"] == 0 and verify_store(skipped, deep=True) == []
    assert store_info(skipped)["skipped_windows"] == 8
    assert (np.asarray(s.pos).reshape(-1, 64)[:, 0] == 0).all()  # whole windows only

    # the fix (no overflowing hook): a rerun completes the store
    fixed = run(_cfg(tmp_path / "f"), model=model, progress=False)
    assert ActivationStore(fixed).n_tokens == 1024 and verify_store(fixed, deep=True) == []


def test_float16_overflow_is_an_inf_named_with_its_place(model, tmp_path) -> None:
    blow_up = {HOOK: lambda x: x.at[0, 9].multiply(1e6)}  # finite in float32, Inf once stored as float16
    with pytest.raises(NonFiniteError, match=rf"inf activation at hook {HOOK}, document \d+, position 9 \(window 0 "):
        run(_cfg(tmp_path / "s", dtype="float16"), model=model, progress=False, interventions=blow_up)


def test_skip_mode_harvest_cut_off_midway_resumes_byte_identical(model, tmp_path, monkeypatch) -> None:
    ref = run(_cfg(tmp_path / "ref", on_nonfinite="skip"), model=model, progress=False, interventions=NAN_BY_DATA)
    flush, calls = StoreWriter._flush, []

    def crash_on_second(self, n):  # the process dies as it would write its second shard
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt
        flush(self, n)

    monkeypatch.setattr(StoreWriter, "_flush", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(_cfg(tmp_path / "cut", on_nonfinite="skip"), model=model, progress=False, interventions=NAN_BY_DATA)
    monkeypatch.setattr(StoreWriter, "_flush", flush)
    partial = ActivationStore(tmp_path / "cut").manifest
    assert partial["n_tokens"] == 256 and partial["skipped_windows"] > 0 and not partial["complete"]
    run(_cfg(tmp_path / "cut", on_nonfinite="skip"), model=model, progress=False, interventions=NAN_BY_DATA)
    assert 0 < ActivationStore(ref).manifest["skipped_windows"] < 16
    assert files(tmp_path / "cut") == files(ref)


def _docs_of_first_batch(model: Model, cfg: HarvestConfig) -> np.ndarray:
    from saelab.data import open_corpus, pack_for_model

    corpus = open_corpus(cfg.corpus, split=cfg.split)
    b = next(iter(pack_for_model(corpus, model, context=64, batch=2)))
    return b.doc


_ARGS = ["--hooks", HOOK, "--tokens", "1536", "--context", "64", "--batch", "4", "--shard-tokens", "512"]


def _cli_cfg(out) -> HarvestConfig:
    """What `saelab harvest _ARGS --out OUT` runs."""
    return HarvestConfig(hooks=[HOOK], tokens=1536, context=64, batch=4, shard_tokens=512, out=out)


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory):
    return run(_cli_cfg(tmp_path_factory.mktemp("ref") / "s"), model=model, progress=False)


def _die_at_rename(suffix: str, nth: int, after: bool = False) -> str:
    """Setup for `killed`: os.replace patched to die at its `nth` rename onto a path ending in `suffix`, just
    before the rename (the .tmp written in full) or, with `after`, just after it."""
    rename = "real(src, dst)"
    return f"""
        import os
        real, n = os.replace, [0]
        def replace(src, dst):
            {rename if after else "pass"}
            if str(dst).endswith({suffix!r}):
                n[0] += 1
                if n[0] == {nth}:
                    die()
            {"pass" if after else rename}
        os.replace = replace
    """


# die just before the 2nd shard's rename, just before the 3rd manifest rename, or just after the 2nd shard's
# rename (the shard on disk, the manifest not yet listing it).
KILL_POINTS = {
    "during a shard write": _die_at_rename(".safetensors", 2),
    "during the manifest update": _die_at_rename("manifest.json", 3),
    "between a shard and its manifest": _die_at_rename(".safetensors", 2, after=True),
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkilled_harvest_resumes_to_identical_store(model, reference, tmp_path, point) -> None:
    out = tmp_path / "s"
    killed(KILL_POINTS[point], ["harvest", *_ARGS, "--out", str(out)])
    m = ActivationStore(out, verify="size").manifest if (out / "manifest.json").exists() else None
    assert m is not None and not m["complete"] and len(m["shards"]) == 1  # only complete shards listed
    if point == "during a shard write":
        assert (out / "shard_000001.safetensors.tmp").exists() and not (out / "shard_000001.safetensors").exists()
    elif point == "during the manifest update":
        assert (out / "manifest.json.tmp").exists()
    else:
        assert (out / "shard_000001.safetensors").exists()  # written, not yet listed
    run(_cli_cfg(out), model=model, progress=False)  # the same harvest again (in this process: faster)
    assert files(out) == files(reference)
    assert verify_store(out, deep=True) == []
