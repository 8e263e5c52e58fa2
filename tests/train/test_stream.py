"""Training straight from the model: the buffer's rows are the hook's activations, shuffled by the documented
key; the iterator state resumes exactly (inside a fill, at a fill boundary, across corpus epochs); a killed
on-the-fly run resumes to the parameters of an uninterrupted one; the data-source config is validated."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from saelab import train
from saelab.data import open_corpus, pack_for_model
from saelab.train.data_source import ModelData
from saelab.train.mesh import make_mesh
from saelab.train.stream import ModelStream
from tests.models.small import sliced_smollm2
from tests.train.same_run import assert_same_run

HOOK = "blocks.1.hook_resid_post"
TEXT = "\n\n".join(
    f"Paragraph {i}: the function returns a list of {i} items, sorted by key, and raises ValueError when empty."
    for i in range(12)
)


@pytest.fixture(scope="module")
def model():
    return sliced_smollm2(2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    f = tmp_path_factory.mktemp("corpus") / "small.txt"
    f.write_text(TEXT)
    return f"text:{f}"


def _data(corpus: str, **kw) -> ModelData:
    base = {"source": "model", "hook": HOOK, "corpus": corpus, "split": "all", "context": 16, "model_batch": 4}
    return ModelData(**(base | {"buffer_batches": 2} | kw))


def _reference_rows(model, corpus: str, epochs: int) -> np.ndarray:
    """The hook's activations at positions 1.. of every window, in stream order, `epochs` passes over the corpus."""
    rows = []
    for b in pack_for_model(open_corpus(corpus, "all"), model, context=16, batch=4):
        _, cache = model.run_with_cache(b.tokens, [HOOK])
        rows.append(np.asarray(cache[HOOK])[:, 1:].reshape(-1, model.cfg.d_model))
    return np.concatenate(rows * epochs)


def test_batches_are_the_hooks_rows_permuted_by_the_fill_key_across_epochs(model, corpus) -> None:
    ref = _reference_rows(model, corpus, 3)
    bs, size = 32, 64
    n_fills = len(ref) // size
    assert len(ref) // 3 < (n_fills - 1) * size, "the draws below should cross a corpus epoch"
    s = ModelStream(_data(corpus), HOOK, bs, make_mesh(1, 1), model=model)
    for fill in range(n_fills):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.key(0), fill), size))
        want = ref[fill * size : (fill + 1) * size][perm]
        got = np.concatenate([np.asarray(next(s)[HOOK]), np.asarray(next(s)[HOOK])])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert s.get_state()["start"][0] >= 1  # the last fill began in a later epoch


@pytest.mark.parametrize("after", [3, 4, 9])  # inside a fill, at a fill boundary, after an epoch wrapped
def test_state_resumes_to_exactly_the_same_batches(model, corpus, after) -> None:
    mesh = make_mesh(1, 1)
    a = ModelStream(_data(corpus, seed=7), HOOK, 32, mesh, model=model)
    for _ in range(after):
        next(a)
    b = ModelStream(_data(corpus, seed=7), HOOK, 32, mesh, model=model)
    b.set_state(a.get_state())
    for _ in range(5):
        assert np.array_equal(np.asarray(next(a)[HOOK]), np.asarray(next(b)[HOOK]))
    assert a.get_state() == b.get_state()


def test_state_of_another_buffer_is_refused(model, corpus) -> None:
    mesh = make_mesh(1, 1)
    a = ModelStream(_data(corpus), HOOK, 32, mesh, model=model)
    b = ModelStream(_data(corpus, buffer_batches=3), HOOK, 32, mesh, model=model)
    with pytest.raises(ValueError, match="buffer_batches 2 in the state, 3 here"):
        b.set_state(a.get_state())


def _cfg(out: Path, name: str, corpus: str, *sets: str):
    return train.load_config(
        None,
        [
            "data.source='model'",
            f"data.hook='{HOOK}'",
            f"data.corpus='{corpus}'",
            "data.split='all'",
            "data.context=16",
            "data.model_batch=4",
            "data.buffer_batches=3",
            "data.batch_size=64",
            "sae.expansion=2",
            "train.tokens=1280",
            "train.log_every=1",
            "train.checkpoint_every=10",
            "train.wandb='disabled'",
            "train.progress=false",
            f"train.out='{out}'",
            f"train.name='{name}'",
            *sets,
        ],
    )


def test_killed_on_the_fly_run_resumes_to_the_uninterrupted_parameters(tmp_path, corpus) -> None:
    full = train.run(_cfg(tmp_path, "full", corpus))
    part = train.run(_cfg(tmp_path, "split", corpus), stop_at_step=7)  # inside the third fill
    resumed = train.run(train.load_run_config(part.run_dir), resume=True)
    assert (part.steps, resumed.start_step) == (7, 7)
    assert resumed.steps == full.steps == 20
    assert_same_run(full, resumed)
    meta = train.load_run_config(full.run_dir)
    assert meta.data.source == "model"
    from saelab.sae import load_sae

    sae = load_sae(full.run_dir)
    assert sae.metadata["hook_name"] == HOOK and sae.metadata.get("dataset_path") is None
    assert sae.metadata["context_size"] == 16


def test_data_source_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="needs data.hook"):
        train.load_config(None, ["data.source='model'"])
    with pytest.raises(ValueError, match="apply to data.source='model'"):
        train.load_config(None, ["data.buffer_batches=4"])
    with pytest.raises(ValueError, match="data.store is not read"):
        train.load_config(None, ["data.source='model'", f"data.hook='{HOOK}'", "data.store='elsewhere'"])
    with pytest.raises(ValueError, match="include_bos is for stores"):
        train.load_config(None, ["data.source='model'", f"data.hook='{HOOK}'", "data.include_bos=true"])
    with pytest.raises(ValueError, match="not a multiple of train.log_every"):
        train.load_config(None, ["train.eval_every=7", "train.log_every=5"])
    with pytest.raises(ValueError, match=r"data.context: must be >= 2 \(got 1\)"):
        train.load_config(None, ["data.source='model'", f"data.hook='{HOOK}'", "data.context=1"])
