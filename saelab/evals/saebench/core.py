"""SAEBench core (sae-bench 0.6 `evals/core/main.py`): reconstruction, sparsity, shrinkage, density and weight
metrics, and CE / KL with the SAE spliced in (core_splice.py), each under SAEBench's own name and definition.

Definitions (`get_sparsity_and_variance_metrics`), over the eval's token batches (`batch x context`), BOS, EOS
and padding excluded (SAEBench's `ignore_tokens`):
- `explained_variance = 1 - mean_b(mean ||x - x_hat||^2) / (mean_b(mean ||x||^2) - m^2)` where m is the mean over
  batches and dimensions of `mean_tokens(x_d^2)`: SAEBench's formula as written (it squares a mean of squares, not
  the mean activation), so it differs from saelab's `explained_variance` (1 - SSE/SST), reported beside it;
- `explained_variance_legacy`: token mean of `1 - ||x - x_hat||^2 / ||x - mean_batch(x)||^2`;
- `mse`: token mean of `||x - x_hat||^2 / n_batch` (the squared error summed over dimensions, divided by the
  batch's token count); `cossim`: mean cos(x, x_hat);
- `l2_ratio`: mean ||x_hat|| / ||x|| (norms below 1e-4 count as 1); `relative_reconstruction_bias`: batch mean of
  `E||x_hat||^2 / E[x . x_hat]`; `l0`: mean count of non-zero latents; `l1`: mean sum of latents (no abs);
- densities: fraction of tokens where a latent is > 0; `frac_alive`, `freq_over_1_percent`, ... as
  `calculate_misc_metrics`; `average_max_encoder_cosine_sim` / `..._decoder_...`: mean over latents of the
  largest cosine of its encoder column (decoder row) with any other.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.evals.metrics import max_decoder_cosine
from saelab.evals.saebench import core_splice
from saelab.evals.saebench.context import BenchContext


class ReconStats(NamedTuple):
    """One batch's quantities, reduced as SAEBench reduces them."""

    n: jax.Array  # tokens
    l2_in: jax.Array  # sum ||x||
    l2_out: jax.Array  # sum ||x_hat||
    l2_ratio: jax.Array  # sum of guarded ||x_hat|| / ||x||
    rrb: jax.Array  # this batch's relative reconstruction bias
    l0: jax.Array
    l1: jax.Array
    ev_legacy: jax.Array  # sum over tokens
    mean_sumsq: jax.Array  # mean ||x||^2 of the batch
    mean_sq_dim: jax.Array  # mean over tokens and dimensions of x_d^2
    mean_resid: jax.Array  # mean ||x - x_hat||^2 of the batch
    mse: jax.Array  # sum over tokens of ||x - x_hat||^2 / n
    cos: jax.Array
    fires: jax.Array  # (d_sae,) tokens where the latent is > 0


@jax.jit
def recon_stats(x: jax.Array, x_hat: jax.Array, z: jax.Array) -> ReconStats:
    """x, x_hat (n, d), z (n, d_sae): one SAEBench batch of ordinary tokens."""
    n = x.shape[0]
    n_in, n_out = jnp.linalg.norm(x, axis=-1), jnp.linalg.norm(x_hat, axis=-1)
    resid = jnp.sum(jnp.square(x - x_hat), -1)  # (n,)
    centred = jnp.sum(jnp.square(x - x.mean(0)), -1)
    cos = jnp.sum(x * x_hat, -1) / (n_in * n_out)
    return ReconStats(
        n=jnp.asarray(n, jnp.float32),
        l2_in=n_in.sum(),
        l2_out=n_out.sum(),
        l2_ratio=(n_out / jnp.where(jnp.abs(n_in) < 1e-4, 1.0, n_in)).sum(),
        rrb=jnp.mean(n_out**2) / jnp.mean(jnp.sum(x * x_hat, -1)),
        l0=(z != 0).sum().astype(jnp.float32),
        l1=z.sum(),
        ev_legacy=jnp.sum(1 - resid / centred),
        mean_sumsq=jnp.mean(n_in**2),
        mean_sq_dim=jnp.mean(jnp.square(x)),
        mean_resid=resid.mean(),
        mse=jnp.sum(resid / n),
        cos=cos.sum(),
        fires=(z > 0).sum(0).astype(jnp.float32),
    )


def finish_recon(stats: list[ReconStats]) -> dict[str, Any]:
    """SAEBench's shrinkage, sparsity and reconstruction_quality numbers and densities from the batches."""
    s = ReconStats(*(np.stack([np.asarray(v, np.float64) for v in col]) for col in zip(*stats, strict=True)))
    n = s.n.sum()
    total_variance = s.mean_sumsq.mean() - s.mean_sq_dim.mean() ** 2
    density = s.fires.sum(0) / n
    return {
        "l2_norm_in": s.l2_in.sum() / n,
        "l2_norm_out": s.l2_out.sum() / n,
        "l2_ratio": s.l2_ratio.sum() / n,
        "relative_reconstruction_bias": s.rrb.mean(),
        "l0": s.l0.sum() / n,
        "l1": s.l1.sum() / n,
        "explained_variance": 1 - s.mean_resid.mean() / total_variance,
        "explained_variance_legacy": s.ev_legacy.sum() / n,
        "mse": s.mse.sum() / n,
        "cossim": s.cos.sum() / n,
        "tokens": int(n),
        **density_metrics(density),
    }


def density_metrics(density: np.ndarray) -> dict[str, float]:
    """`calculate_misc_metrics`'s density numbers from per-latent firing densities."""
    total = density.sum()
    share = lambda t: float(density[density > t].sum() / total) if total > 0 else 0.0
    return {
        "frac_alive": float(np.mean(density > 0)),
        "freq_over_1_percent": float(np.mean(density > 0.01)),
        "freq_over_10_percent": float(np.mean(density > 0.1)),
        "normalized_freq_over_1_percent": share(0.01),
        "normalized_freq_over_10_percent": share(0.1),
    }


def weight_metrics(w_enc: jax.Array, w_dec: jax.Array) -> dict[str, float]:
    """Mean over latents of the largest cosine of its encoder column / decoder row with any other."""
    return {
        "average_max_encoder_cosine_sim": float(max_decoder_cosine(jnp.asarray(w_enc).T).mean()),
        "average_max_decoder_cosine_sim": float(max_decoder_cosine(jnp.asarray(w_dec)).mean()),
    }


def evaluate(ctx: BenchContext) -> dict[str, Any]:
    """SAEBench core on `ctx`'s held-out tokens (or store): the metrics above, CE / KL scores, and saelab's own
    explained variance on the same activations (`saelab_explained_variance`, 1 - SSE/SST) beside SAEBench's."""
    n_tokens = ctx.n_tokens
    enc, dec = ctx.codec()
    params = ctx.sae.params
    batches = ctx.activations(n_tokens, "core: activations")
    stats = []
    for a in batches:  # one SAEBench batch each: its ordinary tokens
        x = jnp.asarray(a)
        z = enc(params, x)
        stats.append(recon_stats(x, dec(params, z), z))
    out = finish_recon(stats)
    acts = np.concatenate(batches)
    sse = float(sum(np.asarray(s.mean_resid) * np.asarray(s.n) for s in stats))
    out["saelab_explained_variance"] = 1 - sse / float(((acts - acts.mean(0)) ** 2).sum())
    out |= weight_metrics(params.W_enc, params.W_dec)
    out |= _splice(ctx, n_tokens)
    return out


def _splice(ctx: BenchContext, n_tokens: int) -> dict[str, float]:
    """CE / KL scores over the eval corpus's token batches (from the model only)."""
    model = ctx.model
    enc, dec = ctx.codec()
    fn = core_splice.make_splice_fn(model.cfg, ctx.hook, enc, dec, ctx.head)
    special = jnp.asarray(ctx.special_ids())
    task = ctx.progress.add_task("core: CE/KL splice", total=n_tokens, info=ctx.cfg.corpus)
    sums, done = None, 0
    for toks in ctx.tokens(n_tokens):
        sums = core_splice.add(sums, fn(model.params, ctx.sae.params, toks, special))
        done += toks.size
        ctx.progress.update(task, completed=min(done, n_tokens))
    return core_splice.finish(sums)


def markdown(m: dict[str, Any]) -> str:
    """The report's core section."""
    rows = [
        ("explained_variance (SAEBench)", m["explained_variance"]),
        ("saelab_explained_variance (1 - SSE/SST)", m["saelab_explained_variance"]),
        ("mse", m["mse"]),
        ("cossim", m["cossim"]),
        ("l0", m["l0"]),
        ("l1", m["l1"]),
        ("l2_ratio", m["l2_ratio"]),
        ("relative_reconstruction_bias", m["relative_reconstruction_bias"]),
        ("ce_loss_score", m["ce_loss_score"]),
        ("kl_div_score", m["kl_div_score"]),
        ("frac_alive", m["frac_alive"]),
        ("average_max_decoder_cosine_sim", m["average_max_decoder_cosine_sim"]),
    ]
    body = "\n".join(f"| {k} | {v:.4f} |" for k, v in rows)
    return f"SAEBench core on {m['tokens']:,} tokens.\n\n| metric | value |\n| --- | --- |\n{body}\n"
