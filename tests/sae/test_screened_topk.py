"""The screened top-k of the sparse encoder (saelab.sae.cpu_kernels.screened_top_k): a bfloat16 GEMM rules
latents out, float32 dots rank the rest. Its oracle is the top k of the pre-activations computed in float64
from the same float32 inputs (ties to the lower index, as lax.top_k): the same indices exactly (the data have
no two values within float32 rounding of each other, except exact ties made on purpose), the values to 1e-6
of the row's largest. A SAE trained with it gives lax.top_k's codes and, to float32 rounding, its loss and
gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.sae import AuxState, SAEParams, cpu_kernels, loss, sae_config
from saelab.sae.auxk import aux_topk
from saelab.sae.topk_select import resolve

screened = jax.jit(cpu_kernels.screened_top_k, static_argnums=3)


def _oracle(x: np.ndarray, W: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    pre = x.astype(np.float64) @ W.astype(np.float64) + b.astype(np.float64)
    idx = np.argsort(-pre, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(pre, idx, 1), idx


def _check(x: np.ndarray, W: np.ndarray, b: np.ndarray, k: int) -> None:
    vals, idx = screened(x, W, b, k)
    want_v, want_i = _oracle(x, W, b, k)
    np.testing.assert_array_equal(np.asarray(idx), want_i)
    scale = np.abs(want_v).max(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(vals), want_v, rtol=0, atol=1e-6 * scale.max())


@pytest.mark.parametrize("rows,d,n,k", [(64, 96, 1024, 32), (33, 40, 600, 7), (20, 16, 40, 8), (9, 64, 256, 256)])
def test_screened_top_k_is_the_float64_top_k(rows: int, d: int, n: int, k: int) -> None:
    """Random scales per row and column; n / 16 < k and k = n take the kernel's other branches."""
    r = np.random.default_rng(rows + n)
    x = (r.normal(size=(rows, d)) * r.lognormal(size=(rows, 1))).astype(np.float32)
    W = (r.normal(size=(d, n)) * r.lognormal(size=(1, n)) / np.sqrt(d)).astype(np.float32)
    b = (0.1 * r.normal(size=n)).astype(np.float32)
    _check(x, W, b, k)


def test_exact_ties_go_to_the_lower_index() -> None:
    """Duplicated encoder columns give bit-identical pre-activations: the lower latent wins, as in lax.top_k."""
    r = np.random.default_rng(3)
    x = r.normal(size=(40, 48)).astype(np.float32)
    W = r.normal(size=(48, 64)).astype(np.float32)
    W = np.concatenate([W, W, W[:, :16]], axis=1)  # 144 latents, each of the first 64 twice or three times
    _check(x, W, np.zeros(144, np.float32), 20)


def test_rows_whose_bound_is_not_finite_are_ranked_in_full() -> None:
    """An infinite bias makes a latent's bounds infinite: the row is recomputed in full and still exact."""
    r = np.random.default_rng(4)
    x = r.normal(size=(12, 32)).astype(np.float32)
    W = r.normal(size=(32, 300)).astype(np.float32)
    b = np.zeros(300, np.float32)
    b[[7, 100, 299]] = np.inf
    b[50] = -np.inf
    vals, idx = screened(x, W, b, 6)
    want = jax.lax.top_k(jnp.asarray(x) @ jnp.asarray(W) + jnp.asarray(b), 6)[1]
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(want))
    assert np.all(np.asarray(vals)[:, :3] == np.inf)


def test_the_encoder_chooses_screening_only_where_it_can() -> None:
    assert resolve("auto", screen=True) == ("screened" if cpu_kernels.fast_bfloat16() else "native")
    assert resolve("auto") == "native" and resolve("screened") == "native"
    assert resolve("auto", jnp.bfloat16, screen=True) == "lax"


def test_aux_topk_reads_only_the_columns_it_is_given() -> None:
    """AuxK from a function of column ids (the screened encoder's) equals AuxK from the full pre-activations,
    at every dead width."""
    r = np.random.default_rng(5)
    pre = jnp.asarray(r.normal(size=(30, 256)), jnp.float32)
    for n_dead in (3, 20, 40, 100, 256):
        dead = jnp.zeros(256, bool).at[r.choice(256, n_dead, replace=False)].set(True)
        want = aux_topk(pre, dead, 16)
        got = aux_topk(lambda ids: pre if ids is None else pre[:, ids], dead, 16)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_sae_trained_with_screening_matches_lax() -> None:
    """A TopK SAE's loss and gradients with topk_select = "screened" against "lax" (AuxK on, a third of the
    latents dead): the same codes, the loss and gradients to float32 rounding."""
    d_in, d_sae, r = 24, 512, np.random.default_rng(6)
    f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
    params = SAEParams(f(d_in, d_sae) / 5, 0.1 * f(d_sae), f(d_sae, d_in), f(d_in), None)
    x, aux = f(64, d_in), AuxState(jnp.arange(d_sae) % 3 == 0, jnp.float32(1.0))
    out = {}
    for select in ("lax", "screened"):
        cfg = sae_config(architecture="topk", d_in=d_in, d_sae=d_sae, k=12, topk_select=select)
        out[select] = jax.jit(jax.value_and_grad(lambda p, c=cfg: loss(p, x, c, aux), has_aux=True))(params)
    for got, want in zip(jax.tree.leaves(out["screened"]), jax.tree.leaves(out["lax"]), strict=True):
        got, want = np.asarray(got), np.asarray(want)
        if got.dtype.kind in "iub":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(np.abs(want).max(), 1.0))
