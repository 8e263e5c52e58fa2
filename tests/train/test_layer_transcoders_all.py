"""All 30 of SmolLM2-135M's MLP transcoders trained in one on-the-fly run equal 30 separate runs on the same
batches, parameter by parameter, to 1e-5 relative (float32; the runs differ only in which hooks one forward
records). The 3-layer file beside this one covers resume and the template; this one covers the full model."""

from __future__ import annotations

import pytest

from saelab import train
from saelab.train import multi, stream
from saelab.train.multi import MultiTrainConfig, load_multi_run_config
from saelab.train.stream import ModelCache
from tests.models.small import sliced_smollm2
from tests.train.same_run import assert_close_params
from tests.train.test_stream import TEXT

IN, OUT = "blocks.{layer}.ln2.hook_normalized", "blocks.{layer}.hook_mlp_out"
RTOL = 1e-5


@pytest.fixture
def full_model(monkeypatch):
    """The whole model (30 blocks), loaded once, in a cache of its own."""
    model = sliced_smollm2(30)
    monkeypatch.setattr(stream, "MODELS", ModelCache(max_forwards=2))
    monkeypatch.setattr(stream.Model, "load", staticmethod(lambda name, dtype: model))
    return model


def test_thirty_transcoders_in_one_run_equal_thirty_separate_runs(full_model, tmp_path) -> None:
    corpus = tmp_path / "small.txt"
    corpus.write_text(TEXT)
    data = {"source": "model", "corpus": f"text:{corpus}", "split": "all"}
    data |= {"context": 16, "model_batch": 4, "buffer_batches": 2, "batch_size": 32}
    cfg = MultiTrainConfig(
        data=data,
        sae={"architecture": "topk", "d_sae": 32, "k": 4, "skip": True},
        train={"name": "all", "out": str(tmp_path), "tokens": 256, "log_every": 4, "checkpoint_every": 8}
        | {"wandb": "disabled", "progress": False},
        each_layer={"hook": IN, "target_hook": OUT},
    )
    assert len(cfg.saes) == full_model.cfg.n_layers == 30
    together = multi.run(cfg)
    saved = load_multi_run_config(together.run_dir)
    for member, mcfg in zip(saved.saes, saved.members(), strict=True):
        elsewhere = mcfg.train.model_copy(update={"name": f"alone-{member.name}", "out": tmp_path})
        alone = train.run(mcfg.model_copy(update={"train": elsewhere}))
        mine = together.saes[member.name]
        assert mine.steps == alone.steps == 8
        assert_close_params(mine, alone, f"{member.name}.", RTOL)
