"""Training a transcoder from a store holding both hooks (SmolLM2 block 0: the MLP's input and output): batches
pair the hooks row by row, each hook is scaled by its own statistics and both scales are folded into the export,
which reads back with its output hook, and the trained transcoder spliced into the model beats zero ablation."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from saelab import train
from saelab.evals import splice
from saelab.evals.transcoder import transcoder_splice_fn
from saelab.harvest import HarvestConfig
from saelab.harvest import run as harvest
from saelab.sae import load_sae
from saelab.sae.registry import forward
from saelab.store import ActivationLoader, ActivationStore
from tests.models.small import sliced_smollm2

HOOK_IN, HOOK_OUT = "blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tc-store") / "smollm2-l0-mlp"
    cfg = HarvestConfig(
        hooks=[HOOK_IN, HOOK_OUT], tokens=8192, context=128, dtype="float32", shard_tokens=4096, out=out
    )
    harvest(cfg, progress=False)
    return out


def _cfg(store: Path, out: Path, *sets: str) -> train.TrainConfig:
    return train.load_config(
        None,
        [
            f"data.store='{store}'",
            f"data.hook='{HOOK_IN}'",
            f"data.target_hook='{HOOK_OUT}'",
            "data.batch_size=512",
            "sae.d_sae=576",
            "sae.k=16",
            "train.tokens=20480",
            "train.log_every=10",
            "train.checkpoint_every=60",
            "train.wandb='disabled'",
            "train.progress=false",
            "optim.lr=1e-3",
            f"train.out='{out}'",
            "train.name='tc'",
            *sets,
        ],
    )


def test_batches_pair_the_input_and_target_rows(store: Path) -> None:
    s = ActivationStore(store)
    batch = next(ActivationLoader(s, HOOK_IN, 64, target_hook=HOOK_OUT))
    np.testing.assert_array_equal(np.asarray(batch.y), s.activations(HOOK_OUT).take(batch.idx, np.float32))
    np.testing.assert_array_equal(np.asarray(batch.x), s.activations(HOOK_IN).take(batch.idx, np.float32))


def test_skip_transcoder_trains_exports_and_splices(store: Path, tmp_path: Path) -> None:
    cfg = _cfg(store, tmp_path, "sae.skip=true")
    r = train.run(cfg)
    assert r.metrics["explained_variance"] > 0.5, r.metrics
    exported = load_sae(r.run_dir)
    assert exported.cfg.d_out == exported.cfg.d_in and exported.cfg.skip
    assert (exported.metadata["hook_name"], exported.metadata["hook_name_out"]) == (HOOK_IN, HOOK_OUT)
    st = ActivationStore(store)
    s_in = train.input_scale(st.stats(HOOK_IN), "sqrt_d", exported.cfg.d_in)
    s_out = train.input_scale(st.stats(HOOK_OUT), "sqrt_d", exported.cfg.d_in)
    assert s_in != pytest.approx(s_out, rel=0.05)  # the two hooks have their own scales
    x = jnp.asarray(st.activations(HOOK_IN).take(np.arange(1, 257), np.float32))
    folded = np.asarray(forward(exported.params, x, exported.cfg))  # raw in, raw out
    scaled = np.asarray(forward(r.params, x * s_in, exported.cfg)) / s_out
    np.testing.assert_allclose(folded, scaled, rtol=1e-4, atol=1e-4 * np.abs(scaled).max())

    model = sliced_smollm2(1)
    texts = ["Return a new list with the items of the given iterable sorted in ascending order."] * 2
    toks, mask = model.to_tokens(texts)
    tokens = jnp.asarray(toks[:, -int(mask.sum(1).min()) :])
    mean = jnp.asarray(np.asarray(st.stats(HOOK_OUT)["mean_no_bos"], np.float32))
    fn = transcoder_splice_fn(model.cfg, HOOK_IN, HOOK_OUT, exported.cfg)
    out = splice.finish(fn(model.params, exported.params, tokens, mean)[0])
    assert out["ce_loss_recovered"] > 0.5, out


def test_transcoder_config_errors(store: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="equals data.hook"):
        train.resolve(_cfg(store, tmp_path, f"data.target_hook='{HOOK_IN}'"))
    with pytest.raises(ValueError, match="not in store"):
        train.resolve(_cfg(store, tmp_path, "data.target_hook='blocks.0.hook_resid_post'"))
    cfg = train.load_config(None, [f"data.store='{store}'", f"data.hook='{HOOK_IN}'", "sae.skip=true", "sae.k=8"])
    with pytest.raises(ValueError, match="needs data.target_hook"):
        train.resolve(cfg)
