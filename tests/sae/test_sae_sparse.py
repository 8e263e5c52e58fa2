"""Sparse TopK kernels against their plain-autodiff dense twins: values and gradients, each test twice: with
saelab's CPU kernels (saelab.sae.cpu_kernels) and with the XLA kernels they replace."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.sae import cpu_kernels, gather
from saelab.sae.auxk import aux_topk
from saelab.sae.codes import densify
from saelab.sae.sparse import (
    dense_decode,
    dense_topk_encode,
    sparse_decode,
    sparse_decode_prefixes,
    topk_encode,
    topk_encode_aux,
)

B, D_IN, D_SAE, K = 37, 6, 16, 4  # 37 tokens: not a multiple of the chunk, so padding is exercised


@pytest.fixture(autouse=True, params=["cpu-kernels", "xla-kernels"])
def small_chunks(monkeypatch, request):
    monkeypatch.setattr(gather, "DEFAULT_CHUNK", 8)
    monkeypatch.setenv("SAELAB_CPU_KERNELS", "1" if request.param == "cpu-kernels" else "0")
    assert cpu_kernels.enabled() == (request.param == "cpu-kernels")


def _arrays(seed: int = 0):
    r = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
    return f(B, D_IN), f(D_IN, D_SAE), 0.1 * f(D_SAE), f(D_SAE, D_IN), f(D_IN), f(B, D_IN)


def _close(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        y = np.asarray(y)
        np.testing.assert_allclose(np.asarray(x), y, rtol=1e-5, atol=1e-5 * max(np.abs(y).max(), 1.0))


@pytest.mark.parametrize("method", ["segment", "gemm"])
def test_sparse_decoder_matches_dense(method: str) -> None:
    x, W_enc, b_enc, W_dec, b_dec, w = _arrays()
    codes = dense_topk_encode(x, W_enc, b_enc, K)

    def objective(decode):
        return lambda vals, W, b: jnp.sum(decode(vals, codes.idx, W, b) * w)

    sparse_fn = lambda v, i, W, b: sparse_decode(v, i, W, b, decoder_grad=method)
    args = (codes.vals, W_dec, b_dec)
    _close(sparse_decode(*codes, W_dec, b_dec), dense_decode(*codes, W_dec, b_dec))
    got = jax.jit(jax.grad(objective(sparse_fn), argnums=(0, 1, 2)))(*args)
    _close(got, jax.jit(jax.grad(objective(dense_decode), argnums=(0, 1, 2)))(*args))


@pytest.mark.parametrize("method", ["segment", "gemm"])
def test_sparse_encoder_matches_dense(method: str) -> None:
    x, W_enc, b_enc, _, _, _ = _arrays()
    wv = jnp.linspace(-1.0, 2.0, B * K).reshape(B, K)

    def objective(encode):
        return lambda x, W, b: jnp.sum(encode(x, W, b).vals * wv)

    sparse_fn = lambda x, W, b: topk_encode(x, W, b, K, encoder_grad=method)
    dense_fn = lambda x, W, b: dense_topk_encode(x, W, b, K)
    s, d = sparse_fn(x, W_enc, b_enc), dense_fn(x, W_enc, b_enc)
    np.testing.assert_array_equal(np.asarray(s.idx), np.asarray(d.idx))
    _close(s.vals, d.vals)
    got = jax.jit(jax.grad(objective(sparse_fn), argnums=(0, 1, 2)))(x, W_enc, b_enc)  # x too: dx checked
    _close(got, jax.jit(jax.grad(objective(dense_fn), argnums=(0, 1, 2)))(x, W_enc, b_enc))


@pytest.mark.parametrize("method", ["segment", "gemm"])
def test_sparse_encoder_with_aux_matches_dense(method: str) -> None:
    x, W_enc, b_enc, _, _, _ = _arrays(1)
    dead = jnp.arange(D_SAE) % 4 == 1
    wv, wa = jnp.cos(jnp.arange(B * K)).reshape(B, K), jnp.sin(jnp.arange(B * 3)).reshape(B, 3)

    def sparse_obj(W, b):
        main, aux = topk_encode_aux(x, W, b, K, dead, 3, encoder_grad=method)
        return jnp.sum(main.vals * wv) + jnp.sum(aux.vals * wa)

    def dense_obj(W, b):
        pre = x @ W + b
        return jnp.sum(dense_topk_encode(x, W, b, K).vals * wv) + jnp.sum(aux_topk(pre, dead, 3).vals * wa)

    _close(
        jax.jit(jax.grad(sparse_obj, argnums=(0, 1)))(W_enc, b_enc),
        jax.jit(jax.grad(dense_obj, argnums=(0, 1)))(W_enc, b_enc),
    )


def test_aux_topk_picks_the_top_dead_latents_at_every_width() -> None:
    r = np.random.default_rng(2)
    pre = r.normal(size=(5, D_SAE)).astype(np.float32)
    fn = jax.jit(aux_topk, static_argnums=2)
    for n_dead in (0, 1, 2, 3, 7, 12, 16):  # every lax.switch width: 4, 8, 16 (d_sae / 4 .. d_sae)
        dead = np.zeros(D_SAE, bool)
        dead[r.permutation(D_SAE)[:n_dead]] = True
        masked = np.where(dead, pre, -np.inf)
        keep = np.zeros_like(dead, shape=pre.shape)
        np.put_along_axis(keep, np.argsort(-masked, axis=1)[:, :3], True, axis=1)
        want = np.where(keep & dead & (pre > 0), pre, 0.0)
        got = fn(jnp.asarray(pre), jnp.asarray(dead), 3)
        np.testing.assert_allclose(np.asarray(densify(*got, D_SAE)), want, err_msg=f"{n_dead} dead")


@pytest.mark.parametrize("method", ["segment", "gemm"])
def test_prefix_decoder_matches_dense(method: str) -> None:
    x, W_enc, b_enc, W_dec, b_dec, _ = _arrays(3)
    codes = dense_topk_encode(x, W_enc, b_enc, K)
    prefixes = (3, 7, 16)
    weights = jnp.arange(1.0, 4.0)[:, None, None] * jnp.cos(jnp.arange(B * D_IN)).reshape(1, B, D_IN)

    def dense_prefixes(vals, W, b):
        c = densify(vals, codes.idx, D_SAE)
        return jnp.stack([c[:, :m] @ W[:m] + b for m in prefixes])

    sparse_fn = lambda v, W, b: sparse_decode_prefixes(v, codes.idx, W, b, prefixes, decoder_grad=method)
    args = (codes.vals, W_dec, b_dec)
    _close(sparse_fn(*args), dense_prefixes(*args))
    obj = lambda f: jax.jit(jax.grad(lambda v, W, b: jnp.sum(f(v, W, b) * weights), argnums=(0, 1, 2)))
    _close(obj(sparse_fn)(*args), obj(dense_prefixes)(*args))


def test_cpu_kernels_match_the_xla_kernels_at_a_train_shape(monkeypatch) -> None:
    """gather_sum, gather_dot and scatter_rows: the CPU kernels against the XLA scans at 300 tokens, 32 slots,
    512 latents, 96 dims, in float32 and bfloat16 compute; the scatter's sums run in the same order, so they
    agree bit for bit; the gathers to 1e-5 of their largest value."""
    r = np.random.default_rng(7)
    w = jnp.asarray(r.normal(size=(300, 32)), jnp.float32)
    idx = jnp.asarray(r.integers(0, 512, size=(300, 32)), jnp.int32)
    rows, table = jnp.asarray(r.normal(size=(300, 96)), jnp.float32), jnp.asarray(r.normal(size=(512, 96)), jnp.float32)
    runs = {}
    for on in ("1", "0"):
        monkeypatch.setenv("SAELAB_CPU_KERNELS", on)
        runs[on] = (
            [
                jax.jit(lambda w, i, t, dt=dt: gather.gather_sum(w, i, t, dt))(w, idx, table)
                for dt in ("float32", "bfloat16")
            ]
            + [
                jax.jit(lambda x, i, t, dt=dt: gather.gather_dot(x[:, None], None, i, t, dt))(rows, idx, table)
                for dt in ("float32", "bfloat16")
            ]
            + [jax.jit(lambda w, i, x: gather.scatter_rows(w, i, x[:, None], None, 512))(w, idx, rows)]
        )
    for got, want in zip(runs["1"], runs["0"], strict=True):
        _close(got, want)
    np.testing.assert_array_equal(np.asarray(runs["1"][-1]), np.asarray(runs["0"][-1]))


def test_cpu_kernels_skip_indices_outside_the_table() -> None:
    """An index outside the table adds nothing and reads as zero (no out-of-bounds memory access)."""
    w, x = jnp.ones((2, 2), jnp.float32), jnp.ones((2, 3), jnp.float32)
    idx, table = jnp.asarray([[0, 5], [-1, 1]], jnp.int32), jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3)
    np.testing.assert_array_equal(np.asarray(cpu_kernels.gather_sum(w, idx, table)), [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(np.asarray(cpu_kernels.gather_dot(x, idx, table)), [[3, 0], [0, 12]])
    np.testing.assert_array_equal(np.asarray(cpu_kernels.scatter_rows(w, idx, x, 2)), [[1, 1, 1], [1, 1, 1]])
