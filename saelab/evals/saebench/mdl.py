"""SAEBench's minimum description length (Ayonrinde et al. 2024; sae-bench 0.6 `evals/mdl/main.py`).

Per latent i, equal-width bins on `[0, max_i]`, where `max_i` is the largest code seen and at least 100 (sae-bench
starts its running maximum at 100); `num_bins` in {4, 6, 8, 12, 16, 32}. Description length in bits:
`DL = sum_i [H(p_i) + p_i H(hist_i)]`, p_i the firing rate (z > 0) and hist_i the histogram of all of the latent's
codes, zeros in the first bin. Viability, for k in {16, 24, 32}: keep each token's top k codes, quantise every code
(zeros too) to its bin's midpoint, decode; viable when `sqrt(MSE) / d_in < 0.01`. Reported: every (bins, k) row
and the least viable DL. Codes and MSE use one set of activations (sae-bench draws a fresh buffer for each).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saelab.evals.saebench.context import BenchContext

NUM_BINS = (4, 6, 8, 12, 16, 32)
KS = (16, 24, 32)
MSE_THRESHOLD = 0.01


@partial(jax.jit, static_argnames=("num_bins",))
def bin_counts(z: jax.Array, top: jax.Array, num_bins: int) -> jax.Array:
    """(d_sae, num_bins) counts of the codes z (n, d_sae) in equal bins on [0, top_i] (the last bin closed)."""
    idx = jnp.clip(jnp.floor(z / (top / num_bins)), 0, num_bins - 1).astype(jnp.int32)  # (n, d_sae)
    flat = (jnp.arange(z.shape[1]) * num_bins)[None, :] + idx
    return jnp.bincount(flat.ravel(), length=z.shape[1] * num_bins).reshape(z.shape[1], num_bins)


def description_length(z: np.ndarray, top: np.ndarray, num_bins: int, chunk: int = 2048) -> float:
    """`sum_i [H(p_i) + p_i H(hist_i)]` in bits for the codes z (n, d_sae)."""
    counts = sum(
        np.asarray(bin_counts(jnp.asarray(z[s : s + chunk]), jnp.asarray(top), num_bins), np.float64)
        for s in range(0, len(z), chunk)
    )
    p = np.mean(z > 0, axis=0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h_bool = np.where((p > 0) & (p < 1), -p * np.log2(p) - (1 - p) * np.log2(1 - p), 0.0)
        q = counts / counts.sum(1, keepdims=True)
        h_hist = -np.sum(np.where((q > 0) & (q < 1), q * np.log2(q), 0.0), axis=1)
    return float(np.sum(h_bool + p * h_hist))


@partial(jax.jit, static_argnames=("k", "dec"))
def quantised_rmse(params, x: jax.Array, z: jax.Array, top: jax.Array, k: int, num_bins: int, dec) -> jax.Array:
    """sqrt(MSE) / d_in of decoding the top-k codes quantised to their bins' midpoints (zeros to the first)."""
    vals, ids = jax.lax.top_k(z, k)
    zk = jnp.zeros_like(z).at[jnp.arange(z.shape[0])[:, None], ids].set(jax.nn.relu(vals))
    width = top / num_bins
    idx = jnp.clip(jnp.ceil(zk / width), 1, num_bins) - 1  # the bin whose (lower, upper] holds the code
    x_hat = dec(params, (idx + 0.5) * width)
    return jnp.sqrt(jnp.mean(jnp.square(x_hat - x))) / x.shape[-1]


def evaluate(ctx: BenchContext) -> dict[str, Any]:
    """Every (bins, k) row and the least viable description length."""
    n_tokens = ctx.n_tokens
    x = np.concatenate(ctx.activations(n_tokens, "mdl: activations"))
    enc, dec = ctx.codec()
    z = np.asarray(enc(ctx.sae.params, jnp.asarray(x)))
    top = np.maximum(z.max(0), 100.0).astype(np.float32)
    rows = []
    for nb in NUM_BINS:
        dl = description_length(z, top, nb)
        for k in KS:
            rmse = float(quantised_rmse(ctx.sae.params, jnp.asarray(x), jnp.asarray(z), top, k=k, num_bins=nb, dec=dec))
            rows.append(
                {
                    "num_bins": nb,
                    "k": k,
                    "description_length": dl,
                    "mse_loss": rmse,
                    "within_threshold": rmse < MSE_THRESHOLD,
                }
            )
    viable = [r["description_length"] for r in rows if r["within_threshold"]]
    return {"minimum_viable_description_length": min(viable) if viable else None, "tokens": len(x), "rows": rows}


def markdown(m: dict[str, Any]) -> str:
    """The report's MDL section."""
    best = m["minimum_viable_description_length"]
    head = f"Least viable description length: {best:.1f} bits" if best is not None else "No (bins, k) is viable"
    rows = "\n".join(
        f"| {r['num_bins']} | {r['k']} | {r['description_length']:.1f} | {r['mse_loss']:.2e} | "
        f"{r['within_threshold']} |"
        for r in m["rows"]
    )
    return (
        f"{head} ({m['tokens']:,} tokens).\n\n| bins | k | DL (bits) | sqrt(MSE)/d_in | viable |\n"
        f"| --- | --- | --- | --- | --- |\n{rows}\n"
    )
