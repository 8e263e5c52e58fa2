"""Each published SAE format, written with random weights, loads into codes and reconstructions equal to a NumPy
float64 implementation of that format's formulas (and to SAELens's own load where sae_lens is installed)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.sae import encode, load_sae
from saelab.sae.affine import decode
from saelab.sae.saelens_io import sae_files
from tests.peer_modules import peer
from tests.sae.published_files import (
    D_IN,
    D_SAE,
    act,
    f64,
    rand,
    saelens_cfg,
    sparsify_cfg,
    write_gemmascope,
    write_llamascope,
    write_saelens,
    write_sparsify,
)

X = np.random.default_rng(7).normal(size=(6, D_IN)).astype(np.float32) * 3 + 1
K = 5
TOL = {"rtol": 1e-4, "atol": 1e-4}


def _norm_in(x: np.ndarray, mode: str, s: float) -> tuple[np.ndarray, object]:
    """SAELens run_time_activation_norm_fn_in (expected_average_only_in: the factor s it folds)."""
    if mode == "expected_average_only_in":
        return x * s, s
    if mode == "constant_norm_rescale":
        c = np.sqrt(x.shape[1]) / np.linalg.norm(x, axis=1, keepdims=True)
        return x * c, c
    if mode == "layer_norm":
        mu = x.mean(1, keepdims=True)
        std = (x - mu).std(1, ddof=1, keepdims=True)
        return (x - mu) / (std + 1e-5), (mu, std)
    return x, None


def _norm_out(y: np.ndarray, mode: str, st: object) -> np.ndarray:
    if mode in ("expected_average_only_in", "constant_norm_rescale"):
        return y / st
    if mode == "layer_norm":
        return y * st[1] + st[0]
    return y


def saelens_reference(w: dict, x: np.ndarray, arch: str, apply_b_dec: bool, mode: str, s: float = 1.0):
    """(codes, reconstruction) as SAELens's encode/decode compute them, float64."""
    p, x = f64(w), np.asarray(x, np.float64)
    xn, st = _norm_in(x, mode, s)
    pre = (xn - p["b_dec"] * apply_b_dec) @ p["W_enc"] + p["b_enc"]
    f = act(pre, arch, K, p["threshold"])
    return f, _norm_out(f @ p["W_dec"] + p["b_dec"], mode, st)


def check_forward(sae, f: np.ndarray, x_hat: np.ndarray) -> None:
    """saelab's codes of X equal the reference codes `f` and its decode equals the reference `x_hat`."""
    codes = encode(sae.params, jnp.asarray(X), sae.cfg)
    np.testing.assert_allclose(np.asarray(codes), f, **TOL)
    np.testing.assert_allclose(np.asarray(decode(sae.params, codes)), x_hat, **TOL)


@pytest.mark.parametrize("mode", ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"])
@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_saelens_encode_decode_equal_the_reference(tmp_path, arch: str, apply_b_dec: bool, mode: str) -> None:
    w = rand(1)
    if arch != "jumprelu":
        w.pop("threshold")
    extra = {"k": K} if arch == "topk" else {}
    cfg = saelens_cfg(arch, apply_b_dec_to_input=apply_b_dec, normalize_activations=mode, **extra)
    write_saelens(tmp_path, w, cfg)
    s = 0.37
    sae = load_sae(tmp_path, runtime_norm=True, norm_scaling_factor=s if mode == "expected_average_only_in" else None)
    f_ref, x_hat_ref = saelens_reference(w | {"threshold": w.get("threshold")}, X, arch, apply_b_dec, mode, s)
    codes = sae.encode(jnp.asarray(X))
    np.testing.assert_allclose(np.asarray(codes), f_ref, **TOL)
    np.testing.assert_allclose(np.asarray(sae.decode(codes, jnp.asarray(X))), x_hat_ref, **TOL)
    assert sae.norm.runtime == (mode if mode in ("constant_norm_rescale", "layer_norm") else "none")
    assert sae.norm.declared == mode
    if sae.norm.runtime == "none":  # constant scales are folded: the plain functions eval and splice use agree
        plain = encode(sae.params, jnp.asarray(X), sae.cfg)
        np.testing.assert_allclose(np.asarray(decode(sae.params, plain)), x_hat_ref, **TOL)
    assert sae.hook_name == "blocks.3.hook_resid_pre" and sae.model_name == "gpt2-small" and sae.format == "saelens"


def test_topk_rescale_acts_by_decoder_norm_is_folded_exactly(tmp_path) -> None:
    w = rand(2)
    w.pop("threshold")
    write_saelens(tmp_path, w, saelens_cfg("topk", k=K, rescale_acts_by_decoder_norm=True))
    sae = load_sae(tmp_path)
    p = f64(w)
    n = np.linalg.norm(p["W_dec"], axis=1)
    f = act(((X - p["b_dec"]) @ p["W_enc"] + p["b_enc"]) * n, "topk", K)  # SAELens TopKSAE.encode
    x_hat = (f / n) @ p["W_dec"] + p["b_dec"]  # TopKSAE.decode
    check_forward(sae, f, x_hat)


def test_pre_6_layout_top_level_names_head_index_finetuning_scale_and_prepend_bos(tmp_path) -> None:
    w = rand(3)
    w.pop("threshold")
    sf = np.random.default_rng(0).uniform(0.5, 2, D_SAE).astype(np.float32)
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "model_name": "gpt2-small",
           "hook_point": "blocks.2.attn.hook_z", "hook_point_head_index": 3, "activation_fn_str": "relu",
           "finetuning_scaling_factor": True, "normalize_activations": False, "apply_b_dec_to_input": True,
           "prepend_bos": False, "context_size": 64}  # fmt: skip
    write_saelens(tmp_path, w | {"finetuning_scaling_factor": sf}, cfg)
    sae = load_sae(tmp_path)
    assert (sae.hook_name, sae.hook_head_index, sae.model_name, sae.prepend_bos) == (
        "blocks.2.attn.hook_z",
        3,
        "gpt2-small",
        False,
    )
    assert sae.cfg.architecture == "relu" and sae.norm.declared == "none"
    p = f64(w)
    f = np.maximum((X - p["b_dec"]) @ p["W_enc"] + p["b_enc"], 0)
    x_hat = (f * sf) @ p["W_dec"] + p["b_dec"]  # older SAELens decode scales the codes first
    check_forward(sae, f, x_hat)


def test_pre_6_topk_as_activation_fn_and_bfloat16_dtype(tmp_path) -> None:
    w = rand(4)
    w.pop("threshold")
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "bfloat16", "hook_name": "blocks.1.hook_resid_post",
           "activation_fn": "topk", "activation_fn_kwargs": {"k": 3}, "model_name": "pythia-70m-deduped"}  # fmt: skip
    write_saelens(tmp_path, w, cfg, dtype="bfloat16")
    sae = load_sae(tmp_path)
    assert (sae.cfg.architecture, sae.cfg.k, sae.cfg.compute_dtype) == ("topk", 3, "bfloat16")
    import ml_dtypes

    np.testing.assert_array_equal(
        np.asarray(sae.params.W_enc), w["W_enc"].astype(ml_dtypes.bfloat16).astype(np.float32)
    )
    assert load_sae(tmp_path, compute_dtype="float32").cfg.compute_dtype == "float32"


@pytest.mark.parametrize(
    ("over", "kwargs", "message"),
    [
        ({"architecture": "gated"}, {}, r"'gated' .* supported: .*b_gate, b_mag and r_mag"),
        (
            {"normalize_activations": "expected_average_only_in"},
            {},
            r"normalize_activations='expected_average_only_in' .* load_sae\(path, norm_scaling_factor=s\)",
        ),
        ({"normalize_activations": "constant_norm_rescale"}, {}, r"'constant_norm_rescale' .* runtime_norm=True"),
        ({"normalize_activations": "per_batch"}, {}, r"normalize_activations='per_batch' is not supported"),
        ({"normalize_activations": "none"}, {"norm_scaling_factor": 2.0}, r"norm_scaling_factor given"),
        ({"dtype": "int8"}, {}, r"dtype 'int8' is not supported"),
        ({"architecture": "topk"}, {}, r"lacks \['k'\], which a SAELens topk SAE needs"),
    ],
)
def test_saelens_fields_that_cannot_be_honoured_are_refused(tmp_path, over: dict, kwargs: dict, message: str) -> None:
    w = rand(5)
    w.pop("threshold")
    write_saelens(tmp_path, w, saelens_cfg("standard") | over)
    with pytest.raises(ValueError, match=message):
        load_sae(tmp_path, **kwargs)


def test_gemma_scope_params_npz_is_jumprelu_without_pre_bias(tmp_path) -> None:
    w = rand(6)
    path = write_gemmascope(tmp_path / "gemma-scope-2b-pt-res" / "layer_4" / "width_16k" / "average_l0_9", w)
    sae = load_sae(path)
    p = f64(w)
    pre = X @ p["W_enc"] + p["b_enc"]  # Gemma Scope: no b_dec subtraction
    f = np.maximum(pre, 0) * (pre > p["threshold"])
    check_forward(sae, f, f @ p["W_dec"] + p["b_dec"])
    assert (sae.format, sae.cfg.architecture, sae.cfg.apply_b_dec_to_input) == ("gemmascope", "jumprelu", False)
    assert sae.hook_name == "blocks.4.hook_resid_post"
    assert 0 < f.astype(bool).sum() < f.size  # the threshold both passes and stops latents
    assert sae_files(path) == (path / "params.npz",)  # what select's cache keys an SAE by


def test_gemma_scope_embedding_sae_folds_its_sqrt_d_scale(tmp_path) -> None:
    w = rand(7)
    path = write_gemmascope(tmp_path / "gemma-scope-2b-pt-res" / "embedding" / "width_4k" / "average_l0_6", w)
    sae = load_sae(path)
    p = f64(w)
    pre = (X / np.sqrt(D_IN)) @ p["W_enc"] + p["b_enc"]  # trained on embeddings divided by sqrt(d_model)
    f = np.maximum(pre, 0) * (pre > p["threshold"])
    check_forward(sae, f, f @ (p["W_dec"] * np.sqrt(D_IN)) + p["b_dec"])
    assert sae.hook_name == "hook_embed"


def test_sparsify_topk_equals_sparse_coder_formulas(tmp_path) -> None:
    w = rand(8)
    path = write_sparsify(tmp_path / "layers.3", w, sparsify_cfg())
    sae = load_sae(path)
    p = f64(w)
    pre = np.maximum((X - p["b_dec"]) @ p["W_enc"] + p["b_enc"], 0)  # fused_encoder: ReLU(linear), then top-k
    f = act(pre, "topk", K)
    check_forward(sae, f, f @ p["W_dec"] + p["b_dec"])
    assert (sae.format, sae.cfg.architecture, sae.cfg.k, sae.cfg.compute_dtype) == ("sparsify", "topk", K, "float32")
    assert sae.hook_name == "blocks.3.hook_resid_post" and sae.metadata["multi_topk"] is True


def test_sparsify_bfloat16_root_folder_and_refusals(tmp_path) -> None:
    import ml_dtypes

    w = rand(9)
    write_sparsify(tmp_path / "layers.0", w, sparsify_cfg(), dtype=ml_dtypes.bfloat16)
    write_sparsify(tmp_path / "layers.1", w, sparsify_cfg())
    assert load_sae(tmp_path / "layers.0").cfg.compute_dtype == "bfloat16"
    with pytest.raises(FileNotFoundError, match=r"sparsify repository .*hookpoints: layers\.0, layers\.1"):
        load_sae(tmp_path)
    for over, message in [
        ({"transcode": True}, "transcode=true"),
        ({"skip_connection": True}, "skip_connection=true"),
        ({"activation": "groupmax"}, "activation='groupmax'"),
    ]:
        write_sparsify(tmp_path / "bad", w, sparsify_cfg(**over))
        with pytest.raises(ValueError, match=message):
            load_sae(tmp_path / "bad")


def test_llama_scope_folds_the_dataset_norm_and_scales_the_threshold(tmp_path) -> None:
    w = rand(10)
    thr, norm_in = 0.4, 2.5
    path = write_llamascope(tmp_path / "Llama3_1-8B-Base-L5R-8x", w, thr, norm_in)
    sae = load_sae(path, compute_dtype="float32")
    assert load_sae(path).cfg.compute_dtype == "bfloat16"  # Llama Scope's dtype, as SAELens sets it
    s = np.sqrt(D_IN) / norm_in
    p = f64(w)
    pre = (X * s) @ p["W_enc"] + p["b_enc"]  # SAELens: fold_activation_norm_scaling_factor(s), threshold * s
    f = np.maximum(pre, 0) * (pre > thr * s)
    check_forward(sae, f, (f @ p["W_dec"] + p["b_dec"]) / s)
    assert (sae.hook_name, sae.model_name, sae.norm.folded_scale) == (
        "blocks.5.hook_resid_post",
        "meta-llama/Llama-3.1-8B",
        pytest.approx(s),
    )


def test_a_folder_in_no_known_format_names_what_each_needs(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"no SAE in a known format .*gemmascope: params\.npz"):
        load_sae(tmp_path)


@pytest.mark.parametrize("mode", ["none", "constant_norm_rescale", "layer_norm"])
@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_saelens_own_load_gives_the_same_codes(tmp_path, arch: str, mode: str) -> None:
    sae_lens = peer("sae_lens")
    import torch

    w = rand(11)
    if arch != "jumprelu":
        w.pop("threshold")
    write_saelens(tmp_path, w, saelens_cfg(arch, normalize_activations=mode, **({"k": K} if arch == "topk" else {})))
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path))
    with torch.no_grad():
        f = theirs.encode(torch.tensor(X))
        x_hat = theirs.decode(f).numpy()
    ours = load_sae(tmp_path, runtime_norm=True)
    codes = ours.encode(jnp.asarray(X))
    np.testing.assert_allclose(np.asarray(codes), f.numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(ours.decode(codes, jnp.asarray(X))), x_hat, **TOL)
    assert json.loads((tmp_path / "cfg.json").read_text())["architecture"] == arch


@pytest.mark.parametrize(
    ("arch", "over"),
    [
        ("standard", {"apply_b_dec_to_input": False}),
        ("topk", {"k": K, "rescale_acts_by_decoder_norm": True}),
        ("jumprelu", {"normalize_activations": "expected_average_only_in"}),
    ],
)
def test_saelens_own_load_agrees_on_pre_bias_decoder_norm_rescaling_and_folded_scale(tmp_path, arch, over) -> None:
    sae_lens = peer("sae_lens")
    import torch

    w = rand(12)
    if arch != "jumprelu":
        w.pop("threshold")
    write_saelens(tmp_path, w, saelens_cfg(arch, **over))
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path))
    s = 0.61
    if over.get("normalize_activations") == "expected_average_only_in":
        theirs.fold_activation_norm_scaling_factor(s)  # what SAELens's from_pretrained does with the yaml's factor
    with torch.no_grad():
        f = theirs.encode(torch.tensor(X))
        x_hat = theirs.decode(f).numpy()
    ours = load_sae(tmp_path, norm_scaling_factor=s if "normalize_activations" in over else None)
    codes = encode(ours.params, jnp.asarray(X), ours.cfg)
    np.testing.assert_allclose(np.asarray(codes), f.numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(decode(ours.params, codes)), x_hat, **TOL)


def test_sparsify_own_load_gives_the_same_codes(tmp_path) -> None:
    sparsify = peer("sparsify")
    import torch

    w = rand(13)
    path = write_sparsify(tmp_path / "layers.2", w, sparsify_cfg())
    theirs = sparsify.SparseCoder.load_from_disk(path)
    with torch.no_grad():
        top_acts, top_idx, _ = theirs.encode(torch.tensor(X))
        x_hat = theirs.decode(top_acts, top_idx).numpy()
    dense = np.zeros((len(X), D_SAE), np.float32)
    np.put_along_axis(dense, top_idx.numpy(), top_acts.numpy(), 1)
    ours = load_sae(path)
    codes = encode(ours.params, jnp.asarray(X), ours.cfg)
    np.testing.assert_allclose(np.asarray(codes), dense, **TOL)
    np.testing.assert_allclose(np.asarray(decode(ours.params, codes)), x_hat, **TOL)
