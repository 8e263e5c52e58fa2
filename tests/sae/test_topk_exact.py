"""saelab's top-k selections, the block top-k and the multi-threaded CPU kernel (saelab.sae.cpu_kernels),
against `jax.lax.top_k`, their oracle: the same values (bit for bit) and the same indices, ties to the lower
index, on random rows, heavy ties, +-0.0, +-inf and NaN, k near the row length and any batch shape; jitted.
Tolerance: none (exact equality of bits and indices)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.sae import AuxState, SAEParams, cpu_kernels, loss, sae_config
from saelab.sae.topk_select import block_top_k, block_width, select_top_k

METHODS = ["blocks", "native"]
lax_jit = jax.jit(jax.lax.top_k, static_argnums=1)
select_jit = jax.jit(select_top_k, static_argnums=(1, 2))


def test_the_cpu_kernels_serve_this_process() -> None:
    """On one CPU device the kernels build and serve, so the "native" cases below test them, not a fallback."""
    assert jax.default_backend() == "cpu" and jax.device_count() == 1
    assert cpu_kernels.enabled(), "saelab's CPU kernels did not build (see the warning)"


def _same(a: np.ndarray, k: int, method: str) -> None:
    x = jnp.asarray(a)
    got_v, got_i = select_jit(x, k, method)
    want_v, want_i = lax_jit(x, k)
    np.testing.assert_array_equal(np.asarray(got_i), np.asarray(want_i))
    bits = lambda v: np.asarray(v).view(np.uint16 if v.dtype.itemsize == 2 else np.uint32)
    np.testing.assert_array_equal(bits(got_v), bits(want_v))


SIZES = [(256, 4), (1000, 8), (1001, 8), (384, 3), (128, 32), (130, 32), (64, 60), (64, 64), (96, 1)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n,k", SIZES)
def test_random_rows(n: int, k: int, method: str) -> None:
    _same(np.random.default_rng(n + k).normal(size=(33, n)).astype(np.float32), k, method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("levels", [1, 2, 5])
def test_many_ties(levels: int, method: str) -> None:
    """Rows of a few distinct values: whole blocks tie on their maxima and on every entry."""
    r = np.random.default_rng(levels)
    a = r.integers(0, levels, size=(40, 512)).astype(np.float32)
    _same(a, 16, method)
    _same(a, 37, method)


@pytest.mark.parametrize("method", METHODS)
def test_signed_zeros_infinities_and_nan(method: str) -> None:
    """lax.top_k orders floats by their bits: -NaN < -inf < ... < -0.0 < 0.0 < ... < inf < NaN."""
    r = np.random.default_rng(1)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0], np.float32)
    a = specials[r.integers(0, len(specials), size=(24, 300))]
    _same(a, 8, method)
    _same(np.full((5, 300), -np.inf, np.float32), 9, method)
    _same(np.where(r.random((6, 300)) < 0.97, -np.inf, r.normal(size=(6, 300))).astype(np.float32), 12, method)


@pytest.mark.parametrize("method", METHODS)
def test_batch_shapes_and_low_precision(method: str) -> None:
    r = np.random.default_rng(2)
    _same(r.normal(size=(2, 3, 5, 700)).astype(np.float32), 10, method)
    _same(r.normal(size=(700,)).astype(np.float32), 10, method)
    _same(np.asarray(jnp.asarray(r.normal(size=(9, 640)), jnp.bfloat16)), 16, method)
    _same(np.round(r.normal(size=(9, 640)), 1).astype(np.float16), 16, method)


def test_the_kernel_adds_the_bias_as_xla_does() -> None:
    """`top_k_bias(pre, bias)` is `lax.top_k(pre + bias)`, values bit for bit, at the train step's shape
    class (rows of 4,608, k 32), with ties made by a bias that cancels some entries exactly."""
    r = np.random.default_rng(5)
    pre = r.normal(size=(300, 4608)).astype(np.float32)
    bias = np.round(r.normal(size=4608), 2).astype(np.float32)
    pre[:, ::7] = -bias[::7]  # exact zeros after the bias: a tie of many entries
    got_v, got_i = jax.jit(cpu_kernels.top_k_bias, static_argnums=2)(pre, bias, 32)
    want_v, want_i = lax_jit(jnp.asarray(pre) + jnp.asarray(bias), 32)
    np.testing.assert_array_equal(np.asarray(got_i), np.asarray(want_i))
    np.testing.assert_array_equal(np.asarray(got_v).view(np.uint32), np.asarray(want_v).view(np.uint32))


def test_blocks_are_used_and_gradient_matches() -> None:
    """The shapes above take the block path (w >= 2), and the values carry lax.top_k's gradient."""
    assert block_width(9216, 32) == 16 and block_width(256, 4) == 8 and block_width(64, 60) == 1
    a = jnp.asarray(np.random.default_rng(3).normal(size=(7, 256)), jnp.float32)
    w = jnp.linspace(-1.0, 1.0, 7 * 5).reshape(7, 5)
    grad = lambda m: jax.jit(jax.grad(lambda x: jnp.sum(select_top_k(x, 5, m)[0] * w)))(a)
    np.testing.assert_array_equal(np.asarray(grad("blocks")), np.asarray(grad("lax")))
    np.testing.assert_array_equal(np.asarray(grad("native")), np.asarray(grad("lax")))


def test_bad_k_and_method_name_the_problem() -> None:
    with pytest.raises(ValueError, match="1 <= k <= 10"):
        block_top_k(jnp.zeros((2, 10)), 11)
    with pytest.raises(ValueError, match="unknown top-k selection 'heap'"):
        select_top_k(jnp.zeros((2, 10)), 3, "heap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 <= k <= 10"):
        select_top_k(jnp.zeros((2, 10)), 11, "native")


def test_native_without_the_kernels_names_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAELAB_CPU_KERNELS", "0")
    assert not cpu_kernels.enabled()
    with pytest.raises(ValueError, match="use 'auto' or 'lax'"):
        select_top_k(jnp.zeros((2, 10)), 3, "native")
    _, idx = select_top_k(jnp.arange(10.0)[None], 3)  # "auto" falls back to lax.top_k
    assert idx.tolist() == [[9, 8, 7]]


@pytest.mark.parametrize("architecture,kernels", [("topk", "sparse"), ("topk", "dense"), ("batchtopk", None)])
def test_sae_losses_and_gradients_do_not_change(architecture: str, kernels: str | None) -> None:
    """A TopK / BatchTopK SAE with topk_select = "blocks" or "native" gives the "lax" loss, codes and gradients
    bit for bit (AuxK on, a third of the latents dead)."""
    d_in, d_sae, r = 8, 256, np.random.default_rng(4)
    f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
    params = SAEParams(f(d_in, d_sae), 0.1 * f(d_sae), f(d_sae, d_in), f(d_in), None)
    if architecture == "batchtopk":
        params = params._replace(threshold=jnp.zeros((d_sae,), jnp.float32))
    x, aux = f(48, d_in), AuxState(jnp.arange(d_sae) % 3 == 0, jnp.float32(1.0))
    extra = {"kernels": kernels} if kernels else {}
    results = []
    for select in ("lax", *METHODS):
        cfg = sae_config(architecture=architecture, d_in=d_in, d_sae=d_sae, k=6, topk_select=select, **extra)
        step = jax.jit(jax.value_and_grad(lambda p, c=cfg: loss(p, x, c, aux), has_aux=True))
        results.append(step(params))
    for result in results[1:]:
        for got, want in zip(jax.tree.leaves(result), jax.tree.leaves(results[0]), strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
