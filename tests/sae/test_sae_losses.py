"""Every architecture's loss and gradients against hand-written float64 NumPy (tests/sae/numpy_sae.py)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.sae import AuxState, SAEConfig, SAEParams, init_aux_state, loss, sae_config

from . import numpy_sae as ref

B, D_IN, D_SAE = 8, 6, 16
DEAD = np.arange(D_SAE) % 3 == 0  # 6 dead latents


def _cfg(architecture: str, **fields) -> SAEConfig:
    """The SAEConfig of the tests' D_IN -> D_SAE shape."""
    return sae_config(architecture=architecture, d_in=D_IN, d_sae=D_SAE, **fields)


def _params(seed: int = 0, threshold: np.ndarray | None = None) -> SAEParams:
    r = np.random.default_rng(seed)
    return SAEParams(
        W_enc=jnp.asarray(r.normal(size=(D_IN, D_SAE)) * 0.5, jnp.float32),
        b_enc=jnp.asarray(r.normal(size=D_SAE) * 0.1, jnp.float32),
        W_dec=jnp.asarray(r.normal(size=(D_SAE, D_IN)) * 0.3, jnp.float32),
        b_dec=jnp.asarray(r.normal(size=D_IN) * 0.1, jnp.float32),
        threshold=None if threshold is None else jnp.asarray(threshold, jnp.float32),
    )


def _x(seed: int = 1) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=(B, D_IN)), jnp.float32)


@partial(jax.jit, static_argnames="cfg")
def _value_and_grad(params: SAEParams, x: jax.Array, aux: AuxState, cfg: SAEConfig):
    return jax.value_and_grad(loss, has_aux=True)(params, x, cfg, aux)


def _grads(cfg: SAEConfig, params: SAEParams, x: jax.Array, aux: AuxState | None = None):
    """One compile per config (SAEConfig is frozen, so hashable and static)."""
    aux = init_aux_state(D_SAE) if aux is None else aux
    (value, out), grads = _value_and_grad(params, x, aux, cfg)
    return float(value), out, grads


def _check(value, grads: SAEParams, ref_value, ref_grads: dict) -> None:
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for name, want in ref_grads.items():
        got = np.asarray(getattr(grads, name))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max(), err_msg=name)


def _aux(dead: np.ndarray = DEAD) -> AuxState:
    return AuxState(jnp.asarray(dead), jnp.float32(1.0))


def test_relu_loss_and_grads() -> None:
    cfg = _cfg("relu", l1_coefficient=0.3)
    params, x = _params(), _x()
    value, out, grads = _grads(cfg, params, x)
    want, want_g = ref.relu_loss(params._asdict(), x, 0.3)
    _check(value, grads, want, want_g)
    assert 0 < float(out.l0) < D_SAE and float(out.sparsity_loss) > 0


def _topk_cfg(kernels: str = "sparse", k_aux: int = 3) -> SAEConfig:
    return _cfg("topk", k=4, k_aux=k_aux, aux_coefficient=0.5, kernels=kernels)


@pytest.mark.parametrize(
    ("kernels", "k_aux", "n_dead"),
    # k_aux <, > n_dead (at most k_aux dead: every dead latent selected, no top-k); 12 dead: all columns
    [("sparse", 3, 6), ("dense", 10, 6), ("sparse", 3, 2), ("sparse", 3, 12)],
)
def test_topk_loss_and_grads_with_auxk(kernels: str, k_aux: int, n_dead: int) -> None:
    cfg = _topk_cfg(kernels, k_aux)
    params, x = _params(), _x()
    dead = np.isin(np.arange(D_SAE), np.random.default_rng(3).permutation(D_SAE)[:n_dead])
    value, out, grads = _grads(cfg, params, x, _aux(dead))
    want, want_g, want_aux = ref.topk_loss(params._asdict(), x, 4, dead, k_aux, 0.5)
    _check(value, grads, want, want_g)
    np.testing.assert_allclose(float(out.aux_loss), want_aux, rtol=1e-5)
    assert want_aux > 0


def test_auxk_is_zero_without_dead_latents() -> None:
    cfg = _topk_cfg()
    params, x = _params(), _x()
    value, out, grads = _grads(cfg, params, x, _aux(np.zeros(D_SAE, bool)))
    want, want_g, _ = ref.topk_loss(params._asdict(), x, 4, np.zeros(D_SAE, bool), 3, 0.5)
    assert float(out.aux_loss) == 0.0
    _check(value, grads, want, want_g)
    assert float(out.l0) == 4.0 and float(out.latent_counts.sum()) == 4 * B


def test_batchtopk_loss_grads_and_threshold_estimate() -> None:
    cfg = _cfg("batchtopk", k=3, k_aux=4, aux_coefficient=0.25)
    params, x = _params(threshold=np.zeros(D_SAE)), _x()
    value, out, grads = _grads(cfg, params, x, _aux())
    want, want_g, want_min = ref.batchtopk_loss(params._asdict(), x, 3, DEAD, 4, 0.25)
    _check(value, grads, want, want_g)
    np.testing.assert_allclose(float(out.batch_threshold), want_min, rtol=1e-6)
    np.testing.assert_allclose(float(out.l0), 3.0)
    assert float(np.abs(grads.threshold).max()) == 0.0


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_jumprelu_loss_and_pseudo_derivative_grads(compute_dtype: str) -> None:
    # a wide bandwidth so many pre-activations fall inside the rectangle kernel
    theta = np.random.default_rng(5).uniform(0.05, 0.4, D_SAE)
    cfg = _cfg("jumprelu", l0_coefficient=0.05, bandwidth=0.3, compute_dtype=compute_dtype)
    params, x = _params(threshold=theta), _x()
    value, out, grads = _grads(cfg, params, x)
    assert grads.threshold.dtype == jnp.float32 and params.threshold.dtype == jnp.float32
    if compute_dtype == "bfloat16":
        return  # dtype checks only; values are compared in float32
    want, want_g, n_in_kernel = ref.jumprelu_loss(params._asdict(), x, 0.05, 0.3)
    assert n_in_kernel > 10
    _check(value, grads, want, want_g)


@pytest.mark.parametrize(("base", "kernels"), [("topk", "sparse"), ("batchtopk", "dense")])
def test_matryoshka_loss_and_grads(base: str, kernels: str) -> None:
    prefixes = (2, 5, 9, 16)
    cfg = _cfg(
        "matryoshka",
        k=4,
        k_aux=3,
        aux_coefficient=0.5,
        matryoshka_base=base,
        matryoshka_prefixes=prefixes,
        kernels=kernels,
    )
    thr = np.zeros(D_SAE) if base == "batchtopk" else None
    params, x = _params(threshold=thr), _x()
    value, out, grads = _grads(cfg, params, x, _aux())
    want, want_g, want_mses = ref.matryoshka_loss(params._asdict(), x, 4, prefixes, base, DEAD, 3, 0.5)
    _check(value, grads, want, want_g)
    np.testing.assert_allclose(np.asarray(out.prefix_mse), want_mses, rtol=1e-5)
    np.testing.assert_allclose(float(out.mse), want_mses[-1], rtol=1e-5)


def test_reconstruction_metrics_definitions() -> None:
    cfg = _cfg("relu", l1_coefficient=0.3)
    params, x = _params(), _x()
    _, out, _ = _grads(cfg, params, x)
    x_np = np.asarray(x, np.float64)
    codes = np.maximum((x_np - params.b_dec) @ params.W_enc + params.b_enc, 0)
    err = codes @ np.asarray(params.W_dec, np.float64) + params.b_dec - x_np
    np.testing.assert_allclose(float(out.mse), np.sum(err**2) / B, rtol=1e-5)
    sst = np.sum((x_np - x_np.mean(0)) ** 2)
    np.testing.assert_allclose(float(out.explained_variance), 1 - np.sum(err**2) / sst, rtol=1e-5)
    np.testing.assert_allclose(float(out.nmse), np.sum(err**2) / np.sum(x_np**2), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out.latent_counts), (codes > 0).sum(0))


def test_sparsity_scale_multiplies_the_coefficient() -> None:
    cfg = _cfg("relu", l1_coefficient=0.3)
    params, x = _params(), _x()
    _, full, _ = _grads(cfg, params, x, init_aux_state(D_SAE))
    _, half, _ = _grads(cfg, params, x, init_aux_state(D_SAE, sparsity_scale=0.5))
    np.testing.assert_allclose(float(half.sparsity_loss), 0.5 * float(full.sparsity_loss), rtol=1e-6)


def test_bfloat16_topk_keeps_float32_params_and_grads() -> None:
    cfg = _topk_cfg().model_copy(update={"compute_dtype": "bfloat16"})
    params, x = _params(), _x()
    value, _, grads = _grads(cfg, params, x, _aux())
    for leaf in jax.tree.leaves(grads):
        assert leaf.dtype == jnp.float32
    want, _, _ = _grads(_topk_cfg(), params, x, _aux())
    np.testing.assert_allclose(value, want, rtol=3e-2)  # bf16 matmuls: close to float32, not equal
