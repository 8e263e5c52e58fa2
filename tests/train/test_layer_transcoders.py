"""A transcoder for every layer in one run, straight from the model: the same parameters as separate runs on the
same batches, one forward per batch for all of them, exact resume, and the `[each_layer]` template."""

from __future__ import annotations

import numpy as np
import pytest

from saelab import train
from saelab.runtime.rundir import RunDir
from saelab.sae import load_sae
from saelab.train import multi, stream
from saelab.train.multi import MultiTrainConfig, load_multi_run_config
from saelab.train.stream import ModelCache
from tests.models.small import sliced_smollm2
from tests.train.same_run import assert_close_params, assert_same_run
from tests.train.test_stream import TEXT

LAYERS = 3
IN, OUT = "blocks.{layer}.ln2.hook_normalized", "blocks.{layer}.hook_mlp_out"


@pytest.fixture
def small(monkeypatch):
    """On-the-fly runs here load SmolLM2 cut to its first 3 blocks, in a cache of their own."""
    model = sliced_smollm2(LAYERS)
    monkeypatch.setattr(stream, "MODELS", ModelCache())
    monkeypatch.setattr(stream.Model, "load", staticmethod(lambda name, dtype: model))
    return model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    f = tmp_path_factory.mktemp("corpus") / "small.txt"
    f.write_text(TEXT)
    return f"text:{f}"


def _cfg(corpus: str, out, run: str, **each) -> MultiTrainConfig:
    """20 steps of 64 tokens from a shuffle buffer of 3 batches; metrics and checkpoints every 4 steps."""
    data = {"source": "model", "corpus": corpus, "split": "all"}  # data.hook: the first layer's
    data |= {"context": 16, "model_batch": 4, "buffer_batches": 3, "batch_size": 64}
    return MultiTrainConfig(
        data=data,
        sae={"architecture": "topk", "d_sae": 64, "k": 8, "skip": True},
        train={"name": run, "out": str(out), "tokens": 1280, "log_every": 4, "checkpoint_every": 4}
        | {"wandb": "disabled", "progress": False},
        each_layer={"hook": IN, "target_hook": OUT} | each,
    )


def test_each_layer_writes_one_transcoder_per_layer_of_the_model(small, corpus, tmp_path) -> None:
    cfg = _cfg(corpus, tmp_path, "t")
    assert [(m.name, m.hook, m.target_hook) for m in cfg.saes] == [
        (f"L{i}", f"blocks.{i}.ln2.hook_normalized", f"blocks.{i}.hook_mlp_out") for i in range(LAYERS)
    ]
    assert "each_layer" not in cfg.dump() and len(MultiTrainConfig(**cfg.dump()).saes) == LAYERS
    picked = _cfg(corpus, tmp_path, "t", layers=[2, 0], name="mlp{layer}", sae={"k": 4})
    assert [(m.name, m.sae) for m in picked.saes] == [("mlp2", {"k": 4}), ("mlp0", {"k": 4})]
    with pytest.raises(ValueError, match="layer"):
        _cfg(corpus, tmp_path, "t", hook="blocks.0.ln2.hook_normalized")  # no {layer} in the template


@pytest.fixture
def together(small, corpus, tmp_path) -> multi.MultiTrainResult:
    return multi.run(_cfg(corpus, tmp_path, "together"))


def test_transcoders_of_every_layer_equal_separate_runs_on_the_same_batches(together, tmp_path) -> None:
    forwards = []
    model_forward = stream.MODELS._forwards
    assert [k[2] for k in model_forward] == [tuple(h.format(layer=i) for i in range(LAYERS) for h in (IN, OUT))]
    cfg = load_multi_run_config(together.run_dir)
    for member, mcfg in zip(cfg.saes, cfg.members(), strict=True):
        elsewhere = mcfg.train.model_copy(update={"name": f"alone-{member.name}", "out": tmp_path})
        alone = train.run(mcfg.model_copy(update={"train": elsewhere}))
        forwards.append(list(stream.MODELS._forwards)[-1][2])
        mine = together.saes[member.name]
        assert mine.steps == alone.steps == 20
        assert_close_params(mine, alone, f"{member.name}.")
    # each separate run ran its own forward of its two hooks
    assert forwards == [(IN.format(layer=i), OUT.format(layer=i)) for i in range(LAYERS)]


def test_a_killed_run_of_every_layers_transcoder_resumes_bitwise(together, corpus, tmp_path) -> None:
    part = multi.run(_cfg(corpus, tmp_path, "split"), stop_at_step=7)  # inside the third fill; checkpoints at 4 and 7
    RunDir(part.saes["L1"].run_dir).checkpoints.joinpath("7").rename(tmp_path / "lost")  # killed while saving
    resumed = multi.run(load_multi_run_config(part.run_dir), resume=True)
    assert (part.steps, resumed.start_step, resumed.steps) == (7, 4, 20)
    for name, full in together.saes.items():
        assert_same_run(full, resumed.saes[name], f"{name}.")
    sae = load_sae(together.saes["L2"].run_dir)
    assert sae.cfg.is_transcoder and sae.metadata["hook_name_out"] == "blocks.2.hook_mlp_out"
    assert sae.metadata["hook_name"] == "blocks.2.ln2.hook_normalized"


def test_each_layer_from_a_store_takes_the_layers_whose_hooks_it_holds(tmp_path) -> None:
    from saelab.store import StoreWriter

    hooks = [IN.format(layer=0), OUT.format(layer=0), IN.format(layer=2), OUT.format(layer=2), IN.format(layer=3)]
    n, rng = 64, np.random.default_rng(0)
    w = StoreWriter.create_or_resume(
        tmp_path / "store",
        meta={"model": "synthetic", "context": 16, "bos_id": 1},
        hooks=hooks,
        d_model=8,
        dtype="float32",
        shard_tokens=64,
    )
    w.append(
        {h: rng.standard_normal((n, 8)).astype(np.float32) for h in hooks},
        tokens=np.ones(n, np.int64),
        doc=np.zeros(n, np.int64),
        pos=np.tile(np.arange(16), n // 16),
    )
    w.finalize()
    cfg = MultiTrainConfig(
        data={"store": str(tmp_path / "store"), "batch_size": 16},
        sae={"architecture": "topk", "d_sae": 16, "k": 2},
        train={"name": "s", "out": str(tmp_path), "tokens": 64, "wandb": "disabled"},
        each_layer={"hook": IN, "target_hook": OUT},
    )
    assert [(m.name, m.hook, m.target_hook) for m in cfg.saes] == [
        ("L0", IN.format(layer=0), OUT.format(layer=0)),
        ("L2", IN.format(layer=2), OUT.format(layer=2)),
    ]
