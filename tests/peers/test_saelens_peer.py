"""The SAELens peer: its export computes exactly what the SAE SAELens trained computes, read by saelab's
`load_sae` and by SAELens's own `SAE.load_from_disk`; the matched settings start where saelab's trainer starts.
Needs the bench extra, which `just test` installs."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from saelab import train
from saelab.peers import saelens
from saelab.sae import decode, encode, load_sae
from saelab.store import ActivationStore, StoreWriter
from saelab.train.init_b_dec import initial_b_dec
from saelab.train.source import store_sample
from tests.peer_modules import peer

sae_lens = peer("sae_lens")

D, N, CONTEXT, K, EXPANSION = 64, 8192, 64, 8, 8
HOOK = "blocks.0.hook_resid_post"
REL = 1e-5  # float32 forwards of the same function in two libraries, reassociated by the folds


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Anisotropic, off-centre Gaussian activations (scale ~3, so the input scaling is not 1), BOS rows at
    every CONTEXT-th position."""
    path = tmp_path_factory.mktemp("peer") / "store"
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((N, D)) * np.linspace(0.5, 6, D) + rng.standard_normal(D)).astype(np.float32)
    w = StoreWriter.create_or_resume(
        path, meta={"model": "toy", "context": CONTEXT}, hooks=[HOOK], d_model=D, dtype="float32", shard_tokens=2048
    )
    w.append({HOOK: x}, np.zeros(N, np.int64), np.arange(N) // CONTEXT, np.arange(N) % CONTEXT)
    w.finalize()
    return path


def _cfg(store: Path, out: Path, **over) -> saelens.SAELensTrainConfig:
    return saelens.SAELensTrainConfig(
        **{"store": store, "k": K, "expansion": EXPANSION, "tokens": 32 * 512, "batch_size": 512, "out": out} | over
    )


def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=REL, atol=REL * float(np.abs(b).max()))


def test_export_equals_the_trained_sae_with_unequal_decoder_norms(store, tmp_path) -> None:
    cfg = _cfg(store, tmp_path / "sae")
    t = saelens.train(cfg)
    assert t.sae.cfg.rescale_acts_by_decoder_norm  # SAELens's default, the case the raw state dict got wrong
    with torch.no_grad():  # every trained SAE has unequal decoder norms; make them very unequal
        t.sae.W_dec.mul_(torch.from_numpy(np.random.default_rng(1).uniform(0.2, 3.0, (D * EXPANSION, 1))).float())
    norms = t.sae.W_dec.detach().norm(dim=-1).numpy()
    assert norms.max() / norms.min() > 5
    out = saelens.export(t.sae, t.scale, cfg.out, {"trainer": "saelens"})

    x = np.asarray(ActivationStore(store).activations(HOOK)[1:513], np.float32)  # raw activations
    with torch.no_grad():  # the trained SAE's own forward, on the inputs it was trained on (scaled)
        codes_trained = t.sae.encode(torch.from_numpy(x * np.float32(t.scale)))
        recon = t.sae.decode(codes_trained).numpy() / t.scale
    codes_trained = codes_trained.numpy() / t.scale  # raw-input units, as the export's codes are

    ours = load_sae(out)
    codes = np.asarray(encode(ours.params, jnp.asarray(x), ours.cfg))
    np.testing.assert_array_equal(codes != 0, codes_trained != 0)  # the same latents picked
    assert ((codes != 0).sum(1) == K).all()
    _close(codes, codes_trained)
    _close(np.asarray(decode(ours.params, jnp.asarray(codes))), recon)

    theirs = sae_lens.SAE.load_from_disk(str(out), device="cpu")
    with torch.no_grad():
        _close(theirs.encode(torch.from_numpy(x)).numpy(), codes_trained)
        _close(theirs(torch.from_numpy(x)).numpy(), recon)
    meta = json.loads((out / "cfg.json").read_text())["metadata"]
    assert meta["trainer"] == "saelens"


def test_raw_state_dict_would_pick_other_latents(store, tmp_path) -> None:
    """The bug this export fixes, kept visible: the unfolded weights of a rescaling TopK SAE select other latents."""
    t = saelens.train(_cfg(store, tmp_path / "sae", tokens=8 * 512))
    with torch.no_grad():
        t.sae.W_dec.mul_(torch.from_numpy(np.random.default_rng(2).uniform(0.2, 3.0, (D * EXPANSION, 1))).float())
        x = torch.from_numpy(np.asarray(ActivationStore(store).activations(HOOK)[1:257], np.float32) * t.scale)
        right = t.sae.encode(x).numpy() != 0
        pre = (x - t.sae.b_dec) @ t.sae.W_enc + t.sae.b_enc
        raw = np.zeros_like(right)
        np.put_along_axis(raw, pre.topk(K, dim=-1).indices.numpy(), True, 1)
    assert (raw != right).any()


def test_run_writes_the_final_export_and_budget_snapshots(store, tmp_path) -> None:
    cfg = _cfg(store, tmp_path / "sae", tokens=8 * 512, checkpoint_tokens=[2 * 512, 4 * 512], settings="matched")
    out = saelens.run(cfg)
    assert out == cfg.out
    for tokens in (1024, 2048, None):
        path = out if tokens is None else tmp_path / f"sae-at-{tokens}"
        meta = json.loads((path / "cfg.json").read_text())["metadata"]
        assert meta["training_tokens"] == (tokens or cfg.tokens)
        assert meta["trainer"] == "saelens-matched"
        assert meta["peer_settings"]["SAETrainerConfig"]["dead_feature_window"] == 1_000_000 // 512
        assert load_sae(path).cfg.d_sae == D * EXPANSION
    assert not list(tmp_path.glob("*.tmp"))
    a, b = (load_sae(tmp_path / f"sae-at-{n}").params.W_enc for n in (1024, 2048))
    assert not np.allclose(np.asarray(a), np.asarray(b))  # snapshots taken at different points


def test_matched_settings_start_from_saelabs_initial_b_dec_and_aux_coefficient(store, tmp_path) -> None:
    trainer, scale, _ = saelens.make_trainer(_cfg(store, tmp_path / "sae", settings="matched"), data=iter(()))
    ours = train.load_config(
        None, [f"data.store='{store}'", "data.batch_size=512", f"sae.k={K}", f"sae.expansion={EXPANSION}"]
    )
    r = train.resolve(ours)
    expected = initial_b_dec(lambda: store_sample(ActivationStore(store), r, ours), ours, scale)
    np.testing.assert_allclose(trainer.sae.b_dec.detach().numpy(), np.asarray(expected), rtol=1e-6, atol=1e-6)
    assert trainer.sae.cfg.aux_loss_coefficient == r.sae.aux_coefficient == 1 / 32
    assert trainer.cfg.dead_feature_window == ours.train.dead_tokens // 512
    defaults, _, _ = saelens.make_trainer(_cfg(store, tmp_path / "sae"), data=iter(()))
    assert not defaults.sae.b_dec.detach().numpy().any()
    assert defaults.sae.cfg.aux_loss_coefficient == 1.0 and defaults.cfg.dead_feature_window == 1000
