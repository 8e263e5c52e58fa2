"""Cross-layer transcoders: the loss and gradients against a float64 NumPy hand computation (L=3, d=4, d_sae=6,
k=2), the sparse TopK kernels against their dense twin, and a CLT whose decoders to later layers are zero
against a set of per-layer transcoders (saelab's topk and jumprelu transcoders) on the same weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.sae import JumpReLUConfig, SAEParams, TopKConfig, sae_config
from saelab.sae.clt import CLTConfig, CLTParams, init_params
from saelab.sae.losses import AuxState
from saelab.sae.registry import encode, forward, loss

L, D, D_SAE, K, B = 3, 4, 6, 2, 5
DEAD = np.array([[1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 1, 1, 1, 0]], bool)  # (L, d_sae)


def _cfg(activation: str = "topk", **kw) -> CLTConfig:
    extra = {"k": K, "aux_coefficient": 0.5} if activation == "topk" else {"l0_coefficient": 0.3, "bandwidth": 0.8}
    return sae_config(architecture="clt", n_layers=L, d_in=D, d_sae=D_SAE, activation=activation, **extra, **kw)


def _params(cfg: CLTConfig, seed: int = 0, later: float = 1.0) -> CLTParams:
    r = np.random.default_rng(seed)
    n = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
    W_dec = tuple(n(D_SAE, L - l, D) * jnp.asarray([1.0] + [later] * (L - l - 1))[None, :, None] for l in range(L))
    threshold = jnp.asarray(r.uniform(0.2, 0.8, size=(L, D_SAE)), jnp.float32) if cfg.uses_threshold else None
    return CLTParams(n(L, D, D_SAE), n(L, D_SAE) * 0.3, W_dec, n(L, D), threshold)


def _data(seed: int = 1) -> tuple[jax.Array, jax.Array]:
    r = np.random.default_rng(seed)
    return jnp.asarray(r.normal(size=(B, L, D)), jnp.float32), jnp.asarray(r.normal(size=(B, L, D)), jnp.float32)


def _aux(dead: np.ndarray = DEAD) -> AuxState:
    return AuxState(jnp.asarray(dead.ravel()), jnp.ones((), jnp.float32))


def _numpy_decode(p: dict, codes: list[np.ndarray]) -> np.ndarray:
    """y_hat[:, t] = sum_{l <= t} codes[l] @ W_dec[l][:, t - l] + b_dec[t], (B, L, d_out)."""
    per_target = [sum(codes[l] @ p["W_dec"][l][:, t - l] for l in range(t + 1)) + p["b_dec"][t] for t in range(L)]
    return np.stack(per_target, 1)


def _numpy_topk(p: dict, x: np.ndarray, y: np.ndarray, aux_coef: float, k_aux: int) -> tuple[float, dict]:
    """(loss, grads) of sum_t mse_t + aux_coef * sum_l AuxK_l for a TopK CLT, by hand in float64."""
    codes, sel, aux_codes, aux_sel, pre = [], [], [], [], []
    for l in range(L):
        z = x[:, l] @ p["W_enc"][l] + p["b_enc"][l]  # (B, d_sae)
        top = np.argsort(-z, axis=1)[:, :K]
        m = np.zeros_like(z, bool)
        np.put_along_axis(m, top, True, 1)
        za = np.where(DEAD[l], z, -np.inf)
        ma = np.zeros_like(z, bool)
        np.put_along_axis(ma, np.argsort(-za, axis=1)[:, :k_aux], True, 1)
        ma &= DEAD[l]
        pre.append(z), sel.append(m & (z > 0)), aux_sel.append(ma & (z > 0))
        codes.append(np.where(sel[-1], z, 0)), aux_codes.append(np.where(aux_sel[-1], z, 0))
    y_hat = _numpy_decode(p, codes)  # (B, L, d_out)
    G = 2 * (y_hat - y) / B  # (B, L, d_out)
    total = np.sum((y_hat - y) ** 2) / B
    g = {"W_enc": np.zeros_like(p["W_enc"]), "b_enc": np.zeros_like(p["b_enc"]), "b_dec": G.sum(0)}
    g["W_dec"] = [np.einsum("bs,btd->std", codes[l], G[:, l:]) for l in range(L)]
    for l in range(L):
        Wf = p["W_dec"][l].reshape(D_SAE, -1)
        e = (y - y_hat)[:, l:].reshape(B, -1)
        e_hat = aux_codes[l] @ Wf
        if not DEAD[l].any():  # AuxK is 0 for a layer without dead latents (saelab.sae.auxk)
            aux_codes[l], e_hat, e = aux_codes[l] * 0, e_hat * 0, e * 0 + 1
            aux_coef_l = 0.0
        else:
            aux_coef_l = aux_coef
        total += aux_coef_l * np.sum((e - e_hat) ** 2) / np.sum(e**2)
        Ga = aux_coef_l * -2 * (e - e_hat) / np.sum(e**2)  # (B, (L - l) * d_out), e held fixed (stop-gradient)
        g["W_dec"][l] += (aux_codes[l].T @ Ga).reshape(D_SAE, L - l, D)
        dpre = np.einsum("btd,std->bs", G[:, l:], p["W_dec"][l]) * sel[l] + (Ga @ Wf.T) * aux_sel[l]
        g["W_enc"][l], g["b_enc"][l] = x[:, l].T @ dpre, dpre.sum(0)
    return total, g


def _numpy_jumprelu(p: dict, x: np.ndarray, y: np.ndarray, lam: float, eps: float) -> tuple[float, dict]:
    """(loss, grads) of sum_t mse_t + lam * L0 for a JumpReLU CLT with the straight-through threshold
    pseudo-derivatives of saelab.sae.jumprelu, by hand in float64."""
    pre = [x[:, l] @ p["W_enc"][l] + p["b_enc"][l] for l in range(L)]
    th = p["threshold"]
    codes = [np.where(pre[l] > th[l], pre[l], 0) for l in range(L)]
    y_hat = _numpy_decode(p, codes)  # (B, L, d_out)
    G = 2 * (y_hat - y) / B
    total = np.sum((y_hat - y) ** 2) / B + lam * sum((pre[l] > th[l]).sum() for l in range(L)) / B
    g = {"W_enc": np.zeros_like(p["W_enc"]), "b_enc": np.zeros_like(p["b_enc"]), "b_dec": G.sum(0)}
    g["W_dec"] = [np.einsum("bs,btd->std", codes[l], G[:, l:]) for l in range(L)]
    g["threshold"] = np.zeros_like(th)
    for l in range(L):
        dcodes = np.einsum("btd,std->bs", G[:, l:], p["W_dec"][l])
        rect = (np.abs((pre[l] - th[l]) / eps) < 0.5).astype(float)
        dpre = dcodes * (pre[l] > th[l])
        g["W_enc"][l], g["b_enc"][l] = x[:, l].T @ dpre, dpre.sum(0)
        g["threshold"][l] = (-(th[l] / eps) * rect * dcodes).sum(0) - lam / eps * rect.sum(0) / B
    return total, g


def _as_numpy(p: CLTParams) -> dict:
    d = {k: np.asarray(v, np.float64) for k, v in p._asdict().items() if v is not None and k != "W_dec"}
    return d | {"W_dec": [np.asarray(w, np.float64) for w in p.W_dec]}


def _check_grads(got: CLTParams, want: dict, tol: float) -> None:
    for name, value in want.items():
        if name == "W_dec":
            for l in range(L):
                np.testing.assert_allclose(got.W_dec[l], value[l], rtol=tol, atol=tol, err_msg=f"W_dec[{l}]")
        else:
            np.testing.assert_allclose(getattr(got, name), value, rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("kernels", ["sparse", "dense"])
def test_topk_loss_and_grads_equal_numpy(kernels):
    cfg = _cfg(kernels=kernels)
    p, (x, y) = _params(cfg), _data()
    (total, out), grads = jax.value_and_grad(lambda q: loss(q, x, cfg, _aux(), y), has_aux=True)(p)
    want, want_g = _numpy_topk(_as_numpy(p), np.asarray(x, np.float64), np.asarray(y, np.float64), 0.5, D // 2)
    assert float(out.aux_loss) > 0
    np.testing.assert_allclose(float(total), want, rtol=1e-5)
    _check_grads(grads, want_g, 2e-4)


def test_jumprelu_loss_and_grads_equal_numpy():
    cfg = _cfg("jumprelu")
    p, (x, y) = _params(cfg), _data()
    (total, out), grads = jax.value_and_grad(lambda q: loss(q, x, cfg, _aux(np.zeros_like(DEAD)), y), has_aux=True)(p)
    want, want_g = _numpy_jumprelu(_as_numpy(p), np.asarray(x, np.float64), np.asarray(y, np.float64), 0.3, 0.8)
    assert np.abs(want_g["threshold"]).max() > 0  # some pre-activations fall inside the kernel
    np.testing.assert_allclose(float(total), want, rtol=1e-5)
    _check_grads(grads, want_g, 2e-4)


def test_sparse_kernels_equal_the_dense_twin():
    sparse, dense = _cfg(kernels="sparse"), _cfg(kernels="dense")
    p, (x, y) = _params(sparse, seed=3), _data(seed=4)
    run = lambda cfg: jax.value_and_grad(lambda q: loss(q, x, cfg, _aux(), y), has_aux=True)(p)
    (ls, os_), gs = jax.jit(lambda: run(sparse))()
    (ld, od), gd = jax.jit(lambda: run(dense))()
    np.testing.assert_allclose(ls, ld, rtol=1e-6)
    np.testing.assert_allclose(os_.aux_loss, od.aux_loss, rtol=1e-6)
    np.testing.assert_array_equal(os_.latent_counts, od.latent_counts)
    for a, b in zip(jax.tree.leaves(gs), jax.tree.leaves(gd), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encode(p, x, sparse), encode(p, x, dense), rtol=1e-6)


@pytest.mark.parametrize("activation", ["topk", "jumprelu"])
def test_a_clt_without_later_decoders_is_a_set_of_per_layer_transcoders(activation):
    cfg = _cfg(activation)
    p, (x, y) = _params(cfg, seed=5, later=0.0), _data(seed=6)
    (total, out), grads = jax.value_and_grad(lambda q: loss(q, x, cfg, None, y), has_aux=True)(p)
    y_hat, codes = forward(p, x, cfg), encode(p, x, cfg)
    plt_total = 0.0
    for l in range(L):
        if activation == "topk":
            tc = TopKConfig(d_in=D, d_sae=D_SAE, d_out=D, k=K, aux_coefficient=0.5)
        else:
            tc = JumpReLUConfig(d_in=D, d_sae=D_SAE, d_out=D, l0_coefficient=0.3, bandwidth=0.8)
        t = p.threshold[l] if cfg.uses_threshold else None
        sp = SAEParams(p.W_enc[l], p.b_enc[l], p.W_dec[l][:, 0], p.b_dec[l], t)
        (tl, _), tg = jax.value_and_grad(lambda q, l=l, tc=tc: loss(q, x[:, l], tc, None, y[:, l]), has_aux=True)(sp)
        plt_total += float(tl)
        np.testing.assert_allclose(forward(sp, x[:, l], tc), y_hat[:, l], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(encode(sp, x[:, l], tc), codes[:, l], rtol=1e-6)
        for name, want in (("W_enc", tg.W_enc), ("b_enc", tg.b_enc), ("b_dec", tg.b_dec), ("threshold", tg.threshold)):
            if want is not None:
                np.testing.assert_allclose(getattr(grads, name)[l], want, rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(grads.W_dec[l][:, 0], tg.W_dec, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(total), plt_total, rtol=1e-5)


def test_shapes_are_checked_and_init_fits_the_config():
    cfg = _cfg()
    p = init_params(jax.random.key(0), cfg)
    assert [w.shape for w in p.W_dec] == [(D_SAE, L - l, D) for l in range(L)] and p.d_sae == L * D_SAE
    np.testing.assert_allclose(np.linalg.norm(p.W_dec[1].reshape(D_SAE, -1), axis=1), cfg.dec_init_norm, rtol=1e-5)
    x, y = _data()
    with pytest.raises(ValueError, match="MLP outputs"):
        loss(p, x, cfg, None, y[:, :2])
    with pytest.raises(ValueError, match="MLP inputs"):
        loss(p, x[:, 0], cfg, None, y)
    with pytest.raises(ValueError, match="dead_mask"):
        loss(p, x, cfg, AuxState(jnp.zeros((D_SAE,), bool), jnp.ones(())), y)
    with pytest.raises(ValueError, match="apply_b_dec_to_input"):
        _cfg(apply_b_dec_to_input=True)
    with pytest.raises(ValueError, match="k do"):
        sae_config(architecture="clt", n_layers=L, d_in=D, d_sae=D_SAE, activation="jumprelu", k=2)


@pytest.mark.parametrize("activation", ["topk", "jumprelu"])
def test_adam_steps_on_the_jitted_loss_fit_a_clt_that_writes_later_layers(activation):
    """Targets made by a random CLT (later-layer decoders included): Adam on CLTParams (a plain pytree, W_dec a
    tuple) through the jitted sparse step lowers the summed mse well below its start."""
    import optax

    cfg = _cfg(activation) if activation == "topk" else _cfg(activation, jumprelu_init_threshold=0.05)
    truth = _params(cfg, seed=7)
    r = np.random.default_rng(8)
    x = jnp.asarray(r.normal(size=(256, L, D)), jnp.float32)
    y = forward(truth, x, cfg)
    p, tx = init_params(jax.random.key(9), cfg), optax.adam(3e-2)

    @jax.jit
    def step(p, s):
        (_, out), g = jax.value_and_grad(lambda q: loss(q, x, cfg, None, y), has_aux=True)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, out.mse

    s, first = tx.init(p), None
    for _ in range(300):
        p, s, mse = step(p, s)
        first = mse if first is None else first
    assert float(mse) < 0.1 * float(first)  # ~0.01-0.03 of the start here


def test_a_sparse_step_costs_the_encoder_gemm_and_o_k_decoder_rows():
    """XLA's flop count of the gradient step: beyond the encoder's forward GEMM (B L d_in d_sae, which picks the
    top k), the sparse kernels add O(k) rows per layer pair; the dense twin pays d_sae rows for every pair."""
    n_layers, d_in, d_sae, batch = 4, 64, 8192, 256
    rows = jax.ShapeDtypeStruct((batch, n_layers, d_in), jnp.float32)
    flops = {}
    for kernels in ("sparse", "dense"):
        fields = {"n_layers": n_layers, "d_in": d_in, "d_sae": d_sae, "k": 8, "aux_coefficient": 0.0}
        cfg = sae_config(architecture="clt", kernels=kernels, **fields)
        grad = jax.jit(jax.grad(lambda q, x, y, cfg=cfg: loss(q, x, cfg, None, y)[0]))
        cost = grad.lower(init_params(jax.random.key(0), cfg), rows, rows).compile().cost_analysis()
        flops[kernels] = (cost if isinstance(cost, dict) else cost[0])["flops"]
    encoder_gemm = 2 * batch * n_layers * d_in * d_sae
    assert flops["sparse"] < 1.2 * encoder_gemm < 0.2 * flops["dense"], flops
