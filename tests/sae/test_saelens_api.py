"""A LoadedSAE answers the calls a SAELens user makes on `sae_lens.SAE`: one random SAE written in SAELens format,
loaded by saelab (`load_sae`) and by SAELens (`SAE.load_from_disk`), gives equal `encode`, `decode` and
`forward` / `sae(x)` on (batch, seq, d_in) activations (rtol 1e-5, atol 1e-5, float32 on both sides), equal weight
attributes and equal `cfg.metadata` read-outs; saelab's `cfg` stays saelab's config (a TopKConfig, ...)."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.sae import (
    LoadedSAE,
    ReLUConfig,
    TopKConfig,
    init_params,
    load_pretrained,
    load_sae,
    sae_config,
    save_saelens,
)
from tests.peer_modules import peer
from tests.sae.published_files import D_IN, D_SAE, rand, saelens_cfg, write_saelens

TOL = {"rtol": 1e-5, "atol": 1e-5}
K = 5
X = np.random.default_rng(3).normal(size=(2, 3, D_IN)).astype(np.float32) * 3 + 1  # (batch, seq, d_in)
RUNTIME_NORMS = ("constant_norm_rescale", "layer_norm")


def _write(path, arch: str, mode: str = "none", seed: int = 1):
    w = rand(seed)
    if arch != "jumprelu":
        w.pop("threshold")
    extra = {"k": K} if arch == "topk" else {}
    return write_saelens(path, w, saelens_cfg(arch, normalize_activations=mode, **extra))


def _both(path, arch: str, mode: str = "none"):
    """(saelab's LoadedSAE, SAELens's SAE) of one folder."""
    sae_lens = peer("sae_lens")
    _write(path, arch, mode)
    return load_sae(path, runtime_norm=True), sae_lens.SAE.load_from_disk(str(path))


def _torch(a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("mode", ["none", *RUNTIME_NORMS])
@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_encode_decode_forward_on_batch_seq_d_equal_saelens(tmp_path, arch: str, mode: str) -> None:
    import torch

    ours, theirs = _both(tmp_path, arch, mode)
    with torch.no_grad():
        f_ref = theirs.encode(_torch(X))
        x_hat_ref = theirs.decode(f_ref)  # SAELens decodes with the statistics its encode stored
        out_ref = theirs(_torch(X))
    x = jnp.asarray(X)
    codes = ours.encode(x)
    assert codes.shape == (2, 3, D_SAE)
    np.testing.assert_allclose(np.asarray(codes), f_ref.numpy(), **TOL)
    x_hat = ours.decode(codes, x)
    assert x_hat.shape == X.shape
    np.testing.assert_allclose(np.asarray(x_hat), x_hat_ref.numpy(), **TOL)
    # saelab decoding SAELens's own codes, and without x where the norm allows it
    np.testing.assert_allclose(np.asarray(ours.decode(jnp.asarray(f_ref.numpy()), x)), x_hat_ref.numpy(), **TOL)
    if mode == "none":
        np.testing.assert_allclose(np.asarray(ours.decode(codes)), x_hat_ref.numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(ours.forward(x)), out_ref.numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(ours(x)), out_ref.numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(jax.jit(ours.forward)(x)), out_ref.numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(jax.jit(ours.encode)(x)), f_ref.numpy(), **TOL)


def test_any_leading_dims_match_the_flat_2d_call(tmp_path) -> None:
    ours, _ = _both(tmp_path, "jumprelu", "layer_norm")
    x4 = np.random.default_rng(0).normal(size=(2, 2, 3, D_IN)).astype(np.float32)
    flat = jnp.asarray(x4.reshape(-1, D_IN))
    codes = ours.encode(jnp.asarray(x4))
    np.testing.assert_array_equal(np.asarray(codes).reshape(-1, D_SAE), np.asarray(ours.encode(flat)))
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x4))).reshape(-1, D_IN), np.asarray(ours(flat)), **TOL)
    one = ours.encode(flat[0])  # a single token, (d_in,) -> (d_sae,)
    assert one.shape == (D_SAE,)
    np.testing.assert_array_equal(np.asarray(one), np.asarray(ours.encode(flat[:1]))[0])
    assert ours(flat[0]).shape == (D_IN,)
    with pytest.raises(ValueError, match=r"\(\.\.\., d_in=8\)"):
        ours.encode(jnp.zeros((2, 4, 2 * D_IN)))  # would reshape silently to (8, 8) without the check
    with pytest.raises(ValueError, match="same leading dimensions"):
        ours.decode(codes, jnp.asarray(x4[:1]))


@pytest.mark.parametrize("mode", RUNTIME_NORMS)
def test_decode_without_x_says_why_it_needs_it_for_a_per_token_norm(tmp_path, mode: str) -> None:
    ours, _ = _both(tmp_path, "standard", mode)
    codes = ours.encode(jnp.asarray(X))
    with pytest.raises(ValueError) as e:
        ours.decode(codes)
    for part in (mode, "statistics", "sae.decode(codes, x)", "sae(x)"):
        assert part in str(e.value), part


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_weights_and_cfg_read_as_in_saelens(tmp_path, arch: str) -> None:
    ours, theirs = _both(tmp_path, arch, "layer_norm")
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        np.testing.assert_array_equal(np.asarray(getattr(ours, name)), getattr(theirs, name).detach().numpy(), name)
    if arch == "jumprelu":
        np.testing.assert_array_equal(np.asarray(ours.threshold), theirs.threshold.detach().numpy())
    else:
        assert ours.threshold is None
    mine, ref = ours.cfg, theirs.cfg
    assert (mine.d_in, mine.d_sae, mine.apply_b_dec_to_input) == (ref.d_in, ref.d_sae, ref.apply_b_dec_to_input)
    assert mine.architecture() == ref.architecture() == arch
    assert mine.architecture == {"standard": "relu"}.get(arch, arch)  # saelab's name, as a plain comparison
    assert mine.normalize_activations == ref.normalize_activations == "layer_norm"
    if arch == "topk":
        assert mine.k == ref.k == K
    for key in ("hook_name", "model_name", "context_size", "prepend_bos", "hook_head_index", "no_such_key"):
        assert getattr(mine.metadata, key) == getattr(ref.metadata, key), key
        assert mine.metadata[key] == ref.metadata[key], key
    assert mine.metadata.hook_name == "blocks.3.hook_resid_pre" and mine.metadata.context_size == 128
    assert "hook_name" in mine.metadata and "no_such_key" not in mine.metadata
    assert mine.metadata.get("no_such_key", 7) == 7
    with pytest.raises(AttributeError, match="read-only"):
        mine.metadata.hook_name = "x"


def test_cfg_stays_saelabs_config_and_follows_replace(tmp_path) -> None:
    ours, _ = _both(tmp_path, "topk")
    plain = sae_config(**ours.cfg.model_dump(exclude_unset=True))
    assert type(ours.cfg) is TopKConfig and ours.cfg == plain and plain == ours.cfg
    assert hash(ours.cfg) == hash(plain)
    assert "metadata" not in ours.cfg.model_dump() and not hasattr(plain, "metadata")
    assert ours.cfg.model_dump() == plain.model_dump() and ours.cfg.model_dump_json() == plain.model_dump_json()
    moved = ours._replace(metadata={**ours.metadata, "hook_name": "blocks.5.hook_resid_post"})
    assert moved.cfg.metadata.hook_name == moved.hook_name == "blocks.5.hook_resid_post"
    assert ours.cfg.metadata.hook_name == "blocks.3.hook_resid_pre"
    rebuilt = LoadedSAE(ours.params, plain, {"hook_name": "h"})  # a plain config gains the read-outs too
    assert rebuilt.cfg.metadata.hook_name == "h" and rebuilt.cfg.architecture() == "topk"
    back = pickle.loads(pickle.dumps(ours))
    assert back.cfg == ours.cfg and back.cfg.architecture() == "topk" and back.cfg.metadata.model_name == "gpt2-small"
    params, cfg, metadata, norm, fmt = ours  # still a NamedTuple
    assert (cfg, metadata, norm, fmt) == (ours.cfg, ours.metadata, ours.norm, "saelens")


def test_a_skip_transcoder_forward_adds_the_skip_term_as_saelens_does(tmp_path) -> None:
    import torch

    sae_lens = peer("sae_lens")
    cfg = ReLUConfig(d_in=D_IN, d_sae=D_SAE, d_out=6, skip=True)
    k = jax.random.split(jax.random.key(0), 4)
    params = init_params(k[0], cfg)._replace(
        b_enc=0.3 * jax.random.normal(k[1], (D_SAE,)),
        b_dec=jax.random.normal(k[2], (6,)),
        W_skip=jax.random.normal(k[3], (D_IN, 6)),
    )
    save_saelens(tmp_path, params, cfg, {"model_name": "m", "hook_name": "blocks.0.ln2.hook_normalized"})
    ours, theirs = load_sae(tmp_path), sae_lens.SAE.load_from_disk(str(tmp_path))
    with torch.no_grad():
        out_ref = theirs(_torch(X)).numpy()
        x_hat_ref = theirs.decode(theirs.encode(_torch(X))).numpy()
    x = jnp.asarray(X)
    assert ours(x).shape == (2, 3, 6) and ours.cfg.architecture() == theirs.cfg.architecture() == "skip_transcoder"
    np.testing.assert_allclose(np.asarray(ours(x)), out_ref, **TOL)
    np.testing.assert_allclose(np.asarray(ours.decode(ours.encode(x))), x_hat_ref, **TOL)  # decode: no skip term


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network and a Hugging Face cache holding gpt2-small-res-jb's blocks.8.hook_resid_pre."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    repo = cache / "models--jbloom--GPT2-Small-SAEs-Reformatted"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    _write(repo / "snapshots" / ("0" * 40) / "blocks.8.hook_resid_pre", "standard")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_from_pretrained_and_load_from_disk_are_saelabs_loaders(offline, tmp_path) -> None:
    sae = LoadedSAE.from_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
    want = load_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
    assert isinstance(sae, LoadedSAE) and sae.cfg == want.cfg and sae.metadata == want.metadata
    assert sae.cfg.metadata.model_name == "gpt2-small" and sae.cfg.metadata.release == "gpt2-small-res-jb"
    np.testing.assert_array_equal(np.asarray(sae.W_enc), np.asarray(want.W_enc))
    with pytest.raises(ValueError, match="unknown SAE release"):
        LoadedSAE.from_pretrained("no-such-release", "x")
    folder = _write(tmp_path / "local", "jumprelu", "layer_norm")
    disk = LoadedSAE.load_from_disk(folder, runtime_norm=True)
    assert disk.cfg == load_sae(folder, runtime_norm=True).cfg and disk.norm.runtime == "layer_norm"


@pytest.mark.parametrize("arch", ["standard", "jumprelu"])
def test_fold_w_dec_norm_equals_saelens(tmp_path, arch: str) -> None:
    """`fold_W_dec_norm` gives SAELens's folded weights (rtol 1e-5) and unit rows, and leaves the forward as it was."""
    ours, theirs = _both(tmp_path, arch)
    assert np.abs(np.linalg.norm(np.asarray(ours.W_dec), axis=1) - 1).max() > 0.1  # the test SAE is not unit
    folded = ours.fold_W_dec_norm()
    theirs.fold_W_dec_norm()
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", *(["threshold"] if arch == "jumprelu" else [])):
        np.testing.assert_allclose(np.asarray(getattr(folded, name)), getattr(theirs, name).detach().numpy(), **TOL)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(folded.W_dec), axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(folded(jnp.asarray(X))), np.asarray(ours(jnp.asarray(X))), **TOL)


def test_fold_w_dec_norm_refuses_a_topk_sae_whose_rows_are_not_unit(tmp_path) -> None:
    ours, _ = _both(tmp_path, "topk")
    with pytest.raises(ValueError, match="decoder norms"):
        ours.fold_W_dec_norm()
    unit = ours._replace(params=ours.params._replace(W_dec=ours.W_dec / jnp.linalg.norm(ours.W_dec, axis=1)[:, None]))
    assert unit.fold_W_dec_norm() is unit
