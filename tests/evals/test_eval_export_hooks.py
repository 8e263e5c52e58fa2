"""Must-show of issue 19 item 4: an SAE trained by saelab at attn.hook_z and one at mlp.hook_post of SmolLM2 (cut
to two blocks), exported to a SAELens-format directory and re-imported from it, evaluate to the same metrics
as the training run itself; and a SAELens SAE that reads one head (`hook_head_index`) splices that head only."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab import train
from saelab.cli import main
from saelab.evals import EvalConfig
from saelab.evals import run as evaluate
from saelab.harvest import HarvestConfig
from saelab.harvest import run as harvest
from saelab.models import HookContext, Model, forward
from saelab.sae import ReLUConfig, SAEParams, encode, load_sae, save_saelens
from saelab.store import ActivationStore
from tests.models.small import sliced_smollm2

CORPUS = dict(corpus="python-docs", split="heldout", tokens=256, context=64, batch=2, progress=False)


@pytest.fixture(scope="module")
def model() -> Model:
    return sliced_smollm2(2)


def _trained_run(model: Model, hook: str, root: Path) -> train.TrainResult:
    store = root / "store"
    harvest(
        HarvestConfig(hooks=[hook], tokens=2048, context=64, batch=8, dtype="float32", shard_tokens=1024, out=store),
        model=model,
        progress=False,
    )
    cfg = train.load_config(
        None,
        [
            f"data.store='{store}'",
            "data.batch_size=256",
            "sae.architecture='topk'",
            "sae.k=16",
            "sae.d_sae=256",
            "train.tokens=2048",
            "optim.lr=3e-3",
            "train.wandb='disabled'",
            "train.progress=false",
            f"train.out='{root}'",
            "train.name='run'",
        ],
    )
    return train.run(cfg)


def _numbers(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("meta", "max_decoder_cosine", "density_log10_histogram")}


@pytest.mark.parametrize("hook", ["blocks.1.attn.hook_z", "blocks.0.mlp.hook_post"])
def test_exported_and_reimported_sae_evaluates_as_the_run(model: Model, hook: str, tmp_path: Path, capsys) -> None:
    r = _trained_run(model, hook, tmp_path)
    export = tmp_path / "exported"
    assert main(["train", "export", str(r.run_dir), "--out", str(export)]) == 0
    capsys.readouterr()

    sae = load_sae(export)  # the re-import
    assert sae.metadata["hook_name"] == hook and sae.metadata["model_name"] == "smollm2-135m"
    assert sae.metadata["model_processing"] == "none"  # the store was harvested from unprocessed weights
    assert sae.cfg.d_in == (model.cfg.d_mlp if "mlp" in hook else model.cfg.n_heads * model.cfg.d_head)
    # the export, on raw activations, encodes as the trained SAE did on the scaled ones it trained on
    scale = sae.metadata["input_scale_folded"]
    x = jnp.asarray(ActivationStore(tmp_path / "store").activations(hook)[1:64], jnp.float32)
    got = np.asarray(encode(sae.params, x, sae.cfg))
    want = np.asarray(encode(r.params, x * scale, sae.cfg)) / scale
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())

    of_run = evaluate(EvalConfig(sae=r.run_dir, out=tmp_path / "run.json", **CORPUS), model=model)
    of_export = evaluate(EvalConfig(sae=export, out=tmp_path / "export.json", **CORPUS), model=model)
    assert _numbers(of_export) == _numbers(of_run)
    assert of_export["max_decoder_cosine"] == of_run["max_decoder_cosine"]
    for key in ("hook", "d_sae", "architecture", "tokens_evaluated", "mean_ablation"):
        assert of_export["meta"][key] == of_run["meta"][key], key
    assert of_run["meta"]["hook"] == hook and of_run["meta"]["mean_ablation"] == "store mean (BOS excluded)"
    assert of_run["explained_variance"] > 0.1 and of_run["l0"] == pytest.approx(16)
    assert of_run["ce_loss_zero_ablation"] != of_run["ce_loss_clean"]
    assert json.loads((tmp_path / "export.json").read_text())["ce_loss_sae"] == of_export["ce_loss_sae"]


def test_one_head_saelens_sae_splices_that_head_only(model: Model, tmp_path: Path) -> None:
    """A SAELens hook_z SAE with hook_head_index: d_in is d_head; an identity SAE there changes nothing, its
    zero ablation equals a forward that zeroes that head only (positions 1..), and without the head index the
    eval names the width mismatch."""
    hook, head, d = "blocks.1.attn.hook_z", 4, model.cfg.d_head
    eye = jnp.eye(d, dtype=jnp.float32)
    params = SAEParams(jnp.concatenate([eye, -eye], 1), jnp.zeros(2 * d), jnp.concatenate([eye, -eye]), jnp.zeros(d))
    cfg = ReLUConfig(d_in=d, d_sae=2 * d)
    meta = {"model_name": "smollm2-135m", "hook_name": hook, "hook_head_index": head}
    path = save_saelens(tmp_path / "head", params, cfg, meta)
    raw = json.loads((path / "cfg.json").read_text())  # SAELens writes the hook fields in metadata
    assert raw["metadata"]["hook_head_index"] == head

    tokens = jnp.asarray(_first_batch(model))
    one_batch = EvalConfig(sae=path, out=tmp_path / "e.json", **{**CORPUS, "tokens": tokens.size})
    out = evaluate(one_batch, model=model)
    assert out["meta"]["hook_head_index"] == head
    assert out["explained_variance"] == pytest.approx(1.0, abs=1e-5)
    assert out["kl_div"] == pytest.approx(0.0, abs=1e-5)
    zero_head = lambda z: z.at[:, 1:, head].set(0.0)
    logits = forward(model.params, model.cfg, tokens, None, HookContext(hooks={hook: zero_head})).logits
    logp = np.asarray(jax.nn.log_softmax(logits[:, :-1]), np.float64)
    ce = -np.mean(np.take_along_axis(logp, np.asarray(tokens)[:, 1:, None], axis=-1))
    assert out["ce_loss_zero_ablation"] == pytest.approx(ce, rel=1e-5)

    (path / "cfg.json").write_text(json.dumps({**raw, "metadata": {**raw["metadata"], "hook_head_index": None}}))
    with pytest.raises(ValueError, match=r"d_in=64 .* 576 wide at blocks.1.attn.hook_z"):
        evaluate(EvalConfig(sae=path, out=tmp_path / "x.json", **CORPUS), model=model)


def _first_batch(model: Model) -> np.ndarray:
    from saelab.data import open_corpus, pack_for_model

    corpus = open_corpus(CORPUS["corpus"], CORPUS["split"], 0.05)
    return next(iter(pack_for_model(corpus, model, context=CORPUS["context"], batch=CORPUS["batch"]))).tokens
