"""Hand-written float64 NumPy forward and backward passes of every SAE loss, the reference of the tests.

Each function returns (loss, grads) with grads a dict over W_enc, b_enc, W_dec, b_dec (and threshold),
derived by hand from the loss definitions in saelab.sae (no autodiff).
"""

from __future__ import annotations

import numpy as np


def _f64(p: dict) -> dict:
    return {k: np.asarray(v, np.float64) for k, v in p.items() if v is not None}


def _encode_pre(p: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xc = x - p["b_dec"]  # apply_b_dec_to_input
    return xc, xc @ p["W_enc"] + p["b_enc"]


def _encoder_backward(p: dict, xc: np.ndarray, dpre: np.ndarray, g: dict) -> None:
    g["W_enc"] += xc.T @ dpre
    g["b_enc"] += dpre.sum(0)
    g["b_dec"] -= (dpre @ p["W_enc"].T).sum(0)


def _mse_backward(
    p: dict, f: np.ndarray, x: np.ndarray, x_hat: np.ndarray, weight: float, g: dict, upto: int | None = None
) -> np.ndarray:
    """Adds weight * grad of mean_b ||x_hat - x||^2 (x_hat from latents < upto); returns dL/df."""
    n = f.shape[1] if upto is None else upto
    G = weight * 2.0 * (x_hat - x) / x.shape[0]
    g["W_dec"][:n] += f[:, :n].T @ G
    g["b_dec"] += G.sum(0)
    df = np.zeros_like(f)
    df[:, :n] = G @ p["W_dec"][:n].T
    return df


def _zeros(p: dict) -> dict:
    return {k: np.zeros_like(v) for k, v in p.items()}


def _mse(x, x_hat):
    return np.sum((x_hat - x) ** 2) / x.shape[0]


def relu_loss(params: dict, x: np.ndarray, l1: float) -> tuple[float, dict]:
    p, x = _f64(params), np.asarray(x, np.float64)
    xc, pre = _encode_pre(p, x)
    f = np.maximum(pre, 0)
    x_hat = f @ p["W_dec"] + p["b_dec"]
    norms = np.linalg.norm(p["W_dec"], axis=1)
    loss = _mse(x, x_hat) + l1 * np.sum(f * norms) / x.shape[0]
    g = _zeros(p)
    df = _mse_backward(p, f, x, x_hat, 1.0, g)
    df += l1 * norms[None, :] / x.shape[0]
    g["W_dec"] += l1 * (f.sum(0) / x.shape[0] / norms)[:, None] * p["W_dec"]
    _encoder_backward(p, xc, df * (pre > 0), g)
    return loss, g


def _topk_mask(pre: np.ndarray, k: int) -> np.ndarray:
    mask = np.zeros(pre.shape, bool)
    top = np.argsort(-pre, axis=1)[:, :k]
    np.put_along_axis(mask, top, True, axis=1)
    return mask


def _aux(
    p: dict,
    pre: np.ndarray,
    x: np.ndarray,
    x_hat: np.ndarray,
    dead: np.ndarray,
    k_aux: int,
    coef: float,
    g: dict,
) -> tuple[float, np.ndarray]:
    """AuxK value and its contribution to dL/dpre (W_dec gradient added to g)."""
    if not dead.any():
        return 0.0, np.zeros_like(pre)
    masked = np.where(dead, pre, -np.inf)
    sel = _topk_mask(masked, k_aux) & dead[None, :] & (pre > 0)
    A = np.where(sel, pre, 0.0)
    e = x - x_hat
    e_hat = A @ p["W_dec"]
    denom = np.sum(e**2)
    aux = np.sum((e_hat - e) ** 2) / denom
    dE = coef * 2.0 * (e_hat - e) / denom
    g["W_dec"] += A.T @ dE
    return aux, (dE @ p["W_dec"].T) * sel


def topk_loss(params: dict, x: np.ndarray, k: int, dead: np.ndarray, k_aux: int, coef: float):
    p, x = _f64(params), np.asarray(x, np.float64)
    xc, pre = _encode_pre(p, x)
    keep = _topk_mask(pre, k) & (pre > 0)
    f = np.where(keep, pre, 0.0)
    x_hat = f @ p["W_dec"] + p["b_dec"]
    g = _zeros(p)
    df = _mse_backward(p, f, x, x_hat, 1.0, g)
    aux, dpre_aux = _aux(p, pre, x, x_hat, dead, k_aux, coef, g)
    _encoder_backward(p, xc, df * keep + dpre_aux, g)
    return _mse(x, x_hat) + coef * aux, g, aux


def batchtopk_codes(pre: np.ndarray, k: int) -> np.ndarray:
    acts = np.maximum(pre, 0)
    flat = acts.ravel()
    cut = np.sort(flat)[::-1][k * pre.shape[0] - 1]
    return np.where(acts >= cut, acts, 0.0)


def batchtopk_loss(params: dict, x: np.ndarray, k: int, dead: np.ndarray, k_aux: int, coef: float):
    p, x = _f64(params), np.asarray(x, np.float64)
    xc, pre = _encode_pre(p, x)
    f = batchtopk_codes(pre, k)
    keep = f > 0
    x_hat = f @ p["W_dec"] + p["b_dec"]
    g = _zeros(p)
    df = _mse_backward(p, f, x, x_hat, 1.0, g)
    aux, dpre_aux = _aux(p, pre, x, x_hat, dead, k_aux, coef, g)
    _encoder_backward(p, xc, df * keep + dpre_aux, g)
    return _mse(x, x_hat) + coef * aux, g, f[keep].min()


def jumprelu_loss(params: dict, x: np.ndarray, l0_coef: float, eps: float):
    p, x = _f64(params), np.asarray(x, np.float64)
    theta = p["threshold"]
    xc, pre = _encode_pre(p, x)
    on = pre > theta
    f = np.where(on, pre, 0.0)
    x_hat = f @ p["W_dec"] + p["b_dec"]
    l0 = on.sum(1).mean()
    g = _zeros(p)
    df = _mse_backward(p, f, x, x_hat, 1.0, g)
    kernel = (np.abs(pre - theta) < eps / 2).astype(np.float64)  # rectangle K((z - theta) / eps)
    g["threshold"] += np.sum(df * -(theta / eps) * kernel, axis=0)  # JumpReLU pseudo-derivative
    g["threshold"] += l0_coef * np.sum(-(1.0 / eps) * kernel, axis=0) / x.shape[0]  # step pseudo-derivative
    _encoder_backward(p, xc, df * on, g)
    return _mse(x, x_hat) + l0_coef * l0, g, kernel.sum()


def matryoshka_loss(
    params: dict, x: np.ndarray, k: int, prefixes, base: str, dead: np.ndarray, k_aux: int, coef: float
):
    p, x = _f64(params), np.asarray(x, np.float64)
    xc, pre = _encode_pre(p, x)
    if base == "topk":
        keep = _topk_mask(pre, k) & (pre > 0)
        f = np.where(keep, pre, 0.0)
    else:
        f = batchtopk_codes(pre, k)
        keep = f > 0
    g = _zeros(p)
    df = np.zeros_like(f)
    mses = []
    for m in prefixes:
        x_hat = f[:, :m] @ p["W_dec"][:m] + p["b_dec"]
        mses.append(_mse(x, x_hat))
        df += _mse_backward(p, f, x, x_hat, 1.0 / len(prefixes), g, upto=m)
    aux, dpre_aux = _aux(p, pre, x, x_hat, dead, k_aux, coef, g)
    _encoder_backward(p, xc, df * keep + dpre_aux, g)
    return float(np.mean(mses)) + coef * aux, g, np.array(mses)
