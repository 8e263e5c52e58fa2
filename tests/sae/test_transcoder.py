"""Transcoders and skip-transcoders: the loss against a float64 NumPy hand computation, recovery of a known
sparse-plus-linear map, input/output scale folding, and the SAELens-format round trip (SAELens itself loads
the export where it is installed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from saelab.sae import (
    ReLUConfig,
    SAEConfig,
    SAEParams,
    TopKConfig,
    fold_input_scaling,
    init_params,
    load_saelens,
    loss,
    sae_config,
    save_saelens,
)
from saelab.sae.registry import forward
from tests.peer_modules import peer

D_IN, D_OUT, D_SAE = 6, 4, 10


def _params(cfg: SAEConfig, seed: int = 0) -> SAEParams:
    r = np.random.default_rng(seed)
    n = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
    return SAEParams(
        W_enc=n(cfg.d_in, cfg.d_sae),
        b_enc=n(cfg.d_sae) * 0.1,
        W_dec=n(cfg.d_sae, cfg.resolved_d_out),
        b_dec=n(cfg.resolved_d_out),
        threshold=jnp.full((cfg.d_sae,), 0.3, jnp.float32) if cfg.uses_threshold else None,
        W_skip=n(cfg.d_in, cfg.resolved_d_out) if cfg.skip else None,
    )


def _numpy_relu_transcoder(p: SAEParams, x: np.ndarray, y: np.ndarray, l1: float) -> tuple[float, float, dict]:
    """(loss, explained variance, grads) of mse(y, relu(x W_enc + b_enc) W_dec + b_dec + x W_skip) + L1, by hand."""
    p = {k: np.asarray(v, np.float64) for k, v in p._asdict().items() if v is not None}
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.shape[0]
    pre = x @ p["W_enc"] + p["b_enc"]
    f = np.maximum(pre, 0)
    y_hat = f @ p["W_dec"] + p["b_dec"] + x @ p["W_skip"]
    norms = np.linalg.norm(p["W_dec"], axis=1)
    mse = np.sum((y_hat - y) ** 2) / n
    total = mse + l1 * np.sum(f * norms) / n
    ev = 1 - np.sum((y - y_hat) ** 2) / np.sum((y - y.mean(0)) ** 2)
    G = 2 * (y_hat - y) / n  # (n, d_out)
    dpre = (G @ p["W_dec"].T + l1 * norms / n) * (pre > 0)
    grads = {
        "W_enc": x.T @ dpre,
        "b_enc": dpre.sum(0),
        "W_dec": f.T @ G + l1 * (f.sum(0) / n)[:, None] * p["W_dec"] / norms[:, None],
        "b_dec": G.sum(0),
        "W_skip": x.T @ G,
    }
    return total, ev, grads


def test_skip_transcoder_loss_and_gradients_match_numpy() -> None:
    cfg = ReLUConfig(d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, skip=True, l1_coefficient=0.2)
    assert cfg.apply_b_dec_to_input is False  # a transcoder's b_dec lives in the output space
    p = _params(cfg)
    r = np.random.default_rng(1)
    x, y = r.normal(size=(32, D_IN)).astype(np.float32), r.normal(size=(32, D_OUT)).astype(np.float32)
    (value, out), grads = jax.value_and_grad(
        lambda q: loss(q, jnp.asarray(x), cfg, None, jnp.asarray(y)), has_aux=True
    )(p)
    want, ev, want_grads = _numpy_relu_transcoder(p, x, y, 0.2)
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    np.testing.assert_allclose(float(out.explained_variance), ev, rtol=1e-5)
    for name, g in want_grads.items():
        np.testing.assert_allclose(np.asarray(getattr(grads, name)), g, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu", "matryoshka"])
def test_every_architecture_reconstructs_the_target(arch: str) -> None:
    extra = {"k": 3} if arch != "jumprelu" else {}
    if arch == "matryoshka":
        extra |= {"matryoshka_base": "topk", "kernels": "dense"}  # inference codes equal training codes
    cfg = sae_config(architecture=arch, d_in=D_IN, d_sae=16, d_out=D_OUT, skip=True, **extra)
    p = _params(cfg)
    r = np.random.default_rng(2)
    x, y = jnp.asarray(r.normal(size=(8, D_IN)), jnp.float32), jnp.asarray(r.normal(size=(8, D_OUT)), jnp.float32)
    _, out = loss(p, x, cfg, None, y)
    y_hat = np.asarray(forward(p, x, cfg), np.float64)
    if arch != "batchtopk":  # batchtopk trains on the batch rule and infers with the threshold
        np.testing.assert_allclose(float(out.mse), np.sum((y_hat - np.asarray(y)) ** 2) / 8, rtol=1e-5)
    with pytest.raises(ValueError, match="target"):
        loss(p, x, cfg, None, y[:, :2])


def test_transcoder_config_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="apply_b_dec_to_input = false"):
        TopKConfig(d_in=4, d_sae=8, k=2, d_out=4, apply_b_dec_to_input=True)
    with pytest.raises(ValueError, match="set d_out"):
        TopKConfig(d_in=4, d_sae=8, k=2, skip=True)
    p = init_params(jax.random.key(0), TopKConfig(d_in=4, d_sae=8, d_out=3, skip=True, k=2))
    assert p.W_dec.shape == (8, 3) and p.b_dec.shape == (3,) and p.W_skip.shape == (4, 3)
    assert not np.any(np.asarray(p.W_skip))  # the skip starts at 0, as in SAELens and sparsify


def _train(cfg: SAEConfig, x: np.ndarray, y: np.ndarray, steps: int, lr: float = 3e-3) -> SAEParams:
    params = init_params(jax.random.key(0), cfg, b_dec=jnp.asarray(y.mean(0), jnp.float32))
    tx = optax.adam(lr)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, xb, yb):
        grads = jax.grad(lambda q: loss(q, xb, cfg, None, yb)[0])(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    r = np.random.default_rng(0)
    for _ in range(steps):
        i = r.integers(0, len(x), 512)
        params, opt = step(params, opt, jnp.asarray(x[i]), jnp.asarray(y[i]))
    return params


def _sparse_problem(n: int, d_in: int, m: int, d_out: int, active: int, seed: int):
    """x = a @ A (a sparse, non-negative; A unit rows), y = a @ D: the MLP-like map a transcoder should learn."""
    r = np.random.default_rng(seed)
    A = r.normal(size=(m, d_in))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    D = r.normal(size=(m, d_out))
    a = np.zeros((n, m))
    for row in a:
        row[r.choice(m, active, replace=False)] = r.uniform(1.0, 2.0, active)
    return (a @ A).astype(np.float32), (a @ D).astype(np.float32), A, D, r


def _ev(y: np.ndarray, y_hat: np.ndarray) -> float:
    return float(1 - np.sum((y - y_hat) ** 2) / np.sum((y - y.mean(0)) ** 2))


def test_topk_transcoder_recovers_a_known_sparse_map() -> None:
    x, y, _, D, _ = _sparse_problem(8192, d_in=24, m=16, d_out=12, active=2, seed=3)
    cfg = TopKConfig(d_in=24, d_sae=32, d_out=12, k=2, aux_coefficient=0.0, kernels="dense")
    p = _train(cfg, x[:6144], y[:6144], steps=1000)
    assert _ev(y[6144:], np.asarray(forward(p, jnp.asarray(x[6144:]), cfg))) > 0.95
    # every true output direction D_j is written by some latent (its decoder row, up to scale)
    W = np.asarray(p.W_dec)
    cos = (D / np.linalg.norm(D, axis=1, keepdims=True)) @ (W / np.linalg.norm(W, axis=1, keepdims=True)).T
    assert np.median(cos.max(1)) > 0.95, cos.max(1)


def test_skip_transcoder_recovers_the_linear_part() -> None:
    """y = a @ D + x @ S with x = [a @ A | g]: the dense part g, which no sparse code carries, must go through
    W_skip = S (its rows on the dense dimensions are identifiable; on the sparse ones latents may share it)."""
    xs, ys, _, _, r = _sparse_problem(8192, d_in=16, m=16, d_out=10, active=2, seed=4)
    x = np.c_[xs, r.normal(size=(8192, 8))].astype(np.float32)  # (n, 24): sparse dims, then dense dims
    S = (r.normal(size=(24, 10)) / 2).astype(np.float32)
    y = ys + x @ S
    cfg = TopKConfig(d_in=24, d_sae=32, d_out=10, k=2, skip=True, aux_coefficient=0.0, kernels="dense")
    p = _train(cfg, x[:6144], y[:6144], steps=1200)
    assert _ev(y[6144:], np.asarray(forward(p, jnp.asarray(x[6144:]), cfg))) > 0.97
    rel = np.linalg.norm(np.asarray(p.W_skip)[16:] - S[16:]) / np.linalg.norm(S[16:])
    assert rel < 0.05, rel
    plain = cfg.model_copy(update={"skip": False})
    q = _train(plain, x[:6144], y[:6144], steps=600)
    assert _ev(y[6144:], np.asarray(forward(q, jnp.asarray(x[6144:]), plain))) < 0.9  # the skip is needed


@pytest.mark.parametrize("mode", ["codes", "weights"])
@pytest.mark.parametrize("arch", ["relu", "jumprelu", "topk"])
def test_fold_input_and_output_scales(arch: str, mode: str) -> None:
    """T'(x) = T(x * s) / t for the folded transcoder, with different input and output scales."""
    cfg = sae_config(
        architecture=arch, d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, skip=True, **({"k": 3} if arch == "topk" else {})
    )
    p = _params(cfg)
    x = jnp.asarray(np.random.default_rng(5).normal(size=(16, D_IN)), jnp.float32)
    s, t = 2.5, 0.4
    folded = fold_input_scaling(p, s, mode, out_scale=t)
    np.testing.assert_allclose(forward(folded, x, cfg), forward(p, x * s, cfg) / t, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("arch", "skip", "theirs"),
    [
        ("relu", False, "transcoder"),
        ("relu", True, "skip_transcoder"),
        ("jumprelu", False, "jumprelu_transcoder"),
        ("batchtopk", False, "jumprelu_transcoder"),
        ("topk", True, "topk_skip_transcoder"),
    ],
)
def test_saelens_format_round_trip(tmp_path, arch: str, skip: bool, theirs: str) -> None:
    import json

    extra = {"k": 3} if arch in ("topk", "batchtopk") else {}
    cfg = sae_config(architecture=arch, d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, skip=skip, **extra)
    p = _params(cfg)
    meta = {"model_name": "m", "hook_name": "blocks.0.ln2.hook_normalized", "hook_name_out": "blocks.0.hook_mlp_out"}
    save_saelens(tmp_path, p, cfg, meta)
    raw = json.loads((tmp_path / "cfg.json").read_text())
    assert (raw["architecture"], raw["d_out"], raw["apply_b_dec_to_input"]) == (theirs, D_OUT, False)
    back = load_saelens(tmp_path)
    assert back.cfg == cfg and back.metadata["hook_name_out"] == "blocks.0.hook_mlp_out"
    for name, v in p._asdict().items():
        if v is not None:
            np.testing.assert_array_equal(np.asarray(getattr(back.params, name)), np.asarray(v), err_msg=name)
    # the same files without saelab's own config: read as SAELens writes them (W_skip (d_out, d_in))
    if theirs.startswith("topk"):
        return  # SAELens has no TopK transcoder: saelab alone reads that name
    raw["metadata"].pop("saelab_config")
    (tmp_path / "cfg.json").write_text(json.dumps(raw))
    foreign = load_saelens(tmp_path)
    assert (foreign.cfg.d_out, foreign.cfg.skip, foreign.cfg.apply_b_dec_to_input) == (D_OUT, skip, False)
    x = jnp.asarray(np.random.default_rng(6).normal(size=(5, D_IN)), jnp.float32)
    if arch != "batchtopk":
        np.testing.assert_allclose(forward(foreign.params, x, foreign.cfg), forward(p, x, cfg), rtol=1e-6)


@pytest.mark.parametrize(("arch", "skip"), [("relu", False), ("relu", True), ("jumprelu", False)])
def test_export_follows_saelens_transcoder_forward(tmp_path, arch: str, skip: bool) -> None:
    """The files, read as SAELens' Transcoder / SkipTranscoder / JumpReLUTranscoder read them (sae_lens/saes/
    transcoder.py: no b_dec subtraction, `relu(x W_enc + b_enc) [* (pre > threshold)] W_dec + b_dec
    [+ x W_skip^T]`, W_skip (d_out, d_in)), give saelab's output."""
    from safetensors.numpy import load_file

    cfg = sae_config(architecture=arch, d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, skip=skip)
    p = _params(cfg)
    save_saelens(tmp_path, p, cfg, {"model_name": "m", "hook_name": "blocks.0.ln2.hook_normalized"})
    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    x = np.random.default_rng(7).normal(size=(5, D_IN)).astype(np.float32)
    pre = x @ w["W_enc"] + w["b_enc"]
    f = np.maximum(pre, 0) * ((pre > w["threshold"]) if arch == "jumprelu" else 1)
    theirs = f @ w["W_dec"] + w["b_dec"]
    if skip:
        assert w["W_skip"].shape == (D_OUT, D_IN)
        theirs = theirs + x @ w["W_skip"].T
    np.testing.assert_allclose(theirs, np.asarray(forward(p, jnp.asarray(x), cfg)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("arch", "skip"), [("relu", False), ("relu", True), ("jumprelu", False)])
def test_export_loads_in_saelens(tmp_path, arch: str, skip: bool) -> None:
    """SAELens itself (a peer: missing, the test fails naming the install) loads the export and computes ours."""
    SAE = peer("sae_lens").SAE
    import torch

    cfg = sae_config(architecture=arch, d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, skip=skip)
    p = _params(cfg)
    save_saelens(tmp_path, p, cfg, {"model_name": "m", "hook_name": "blocks.0.ln2.hook_normalized"})
    theirs = SAE.load_from_disk(str(tmp_path), device="cpu")
    x = np.random.default_rng(7).normal(size=(5, D_IN)).astype(np.float32)
    with torch.no_grad():
        got = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, np.asarray(forward(p, jnp.asarray(x), cfg)), rtol=1e-4, atol=1e-5)
