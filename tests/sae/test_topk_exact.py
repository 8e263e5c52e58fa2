"""saelab's block top-k against `jax.lax.top_k`, its oracle: the same values (bit for bit) and the same
indices, ties to the lower index, on random rows, heavy ties, +-0.0, +-inf and NaN, k near the row length
and any batch shape; jitted. Tolerance: none (exact equality of bits and indices)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.sae import AuxState, SAEParams, loss, sae_config
from saelab.sae.topk_select import block_top_k, block_width, select_top_k

block_jit = jax.jit(block_top_k, static_argnums=1)
lax_jit = jax.jit(jax.lax.top_k, static_argnums=1)


def _same(a: np.ndarray, k: int) -> None:
    x = jnp.asarray(a)
    got_v, got_i = block_jit(x, k)
    want_v, want_i = lax_jit(x, k)
    np.testing.assert_array_equal(np.asarray(got_i), np.asarray(want_i))
    bits = lambda v: np.asarray(v).view(np.uint16 if v.dtype.itemsize == 2 else np.uint32)
    np.testing.assert_array_equal(bits(got_v), bits(want_v))


SIZES = [(256, 4), (1000, 8), (1001, 8), (384, 3), (128, 32), (130, 32), (64, 60), (64, 64), (96, 1)]


@pytest.mark.parametrize("n,k", SIZES)
def test_random_rows(n: int, k: int) -> None:
    _same(np.random.default_rng(n + k).normal(size=(33, n)).astype(np.float32), k)


@pytest.mark.parametrize("levels", [1, 2, 5])
def test_many_ties(levels: int) -> None:
    """Rows of a few distinct values: whole blocks tie on their maxima and on every entry."""
    r = np.random.default_rng(levels)
    a = r.integers(0, levels, size=(40, 512)).astype(np.float32)
    _same(a, 16)
    _same(a, 37)


def test_signed_zeros_infinities_and_nan() -> None:
    """lax.top_k orders floats by their bits: -NaN < -inf < ... < -0.0 < 0.0 < ... < inf < NaN."""
    r = np.random.default_rng(1)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0], np.float32)
    a = specials[r.integers(0, len(specials), size=(24, 300))]
    _same(a, 8)
    _same(np.full((5, 300), -np.inf, np.float32), 9)
    _same(np.where(r.random((6, 300)) < 0.97, -np.inf, r.normal(size=(6, 300))).astype(np.float32), 12)


def test_batch_shapes_and_low_precision() -> None:
    r = np.random.default_rng(2)
    _same(r.normal(size=(2, 3, 5, 700)).astype(np.float32), 10)
    _same(r.normal(size=(700,)).astype(np.float32), 10)
    _same(np.asarray(jnp.asarray(r.normal(size=(9, 640)), jnp.bfloat16)), 16)
    _same(np.round(r.normal(size=(9, 640)), 1).astype(np.float16), 16)


def test_blocks_are_used_and_gradient_matches() -> None:
    """The shapes above take the block path (w >= 2), and the values carry lax.top_k's gradient."""
    assert block_width(9216, 32) == 16 and block_width(256, 4) == 8 and block_width(64, 60) == 1
    a = jnp.asarray(np.random.default_rng(3).normal(size=(7, 256)), jnp.float32)
    w = jnp.linspace(-1.0, 1.0, 7 * 5).reshape(7, 5)
    grad = lambda m: jax.jit(jax.grad(lambda x: jnp.sum(select_top_k(x, 5, m)[0] * w)))(a)
    np.testing.assert_array_equal(np.asarray(grad("blocks")), np.asarray(grad("lax")))


def test_bad_k_and_method_name_the_problem() -> None:
    with pytest.raises(ValueError, match="1 <= k <= 10"):
        block_top_k(jnp.zeros((2, 10)), 11)
    with pytest.raises(ValueError, match="unknown top-k selection 'heap'"):
        select_top_k(jnp.zeros((2, 10)), 3, "heap")  # type: ignore[arg-type]


@pytest.mark.parametrize("architecture,kernels", [("topk", "sparse"), ("topk", "dense"), ("batchtopk", None)])
def test_sae_losses_and_gradients_do_not_change(architecture: str, kernels: str | None) -> None:
    """A TopK / BatchTopK SAE with topk_select = "blocks" gives the "lax" loss, codes and gradients bit for bit
    (AuxK on, a third of the latents dead)."""
    d_in, d_sae, r = 8, 256, np.random.default_rng(4)
    f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
    params = SAEParams(f(d_in, d_sae), 0.1 * f(d_sae), f(d_sae, d_in), f(d_in), None)
    if architecture == "batchtopk":
        params = params._replace(threshold=jnp.zeros((d_sae,), jnp.float32))
    x, aux = f(48, d_in), AuxState(jnp.arange(d_sae) % 3 == 0, jnp.float32(1.0))
    extra = {"kernels": kernels} if kernels else {}
    results = []
    for select in ("lax", "blocks"):
        cfg = sae_config(architecture=architecture, d_in=d_in, d_sae=d_sae, k=6, topk_select=select, **extra)
        step = jax.jit(jax.value_and_grad(lambda p, c=cfg: loss(p, x, c, aux), has_aux=True))
        results.append(step(params))
    for got, want in zip(jax.tree.leaves(results[1]), jax.tree.leaves(results[0]), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
