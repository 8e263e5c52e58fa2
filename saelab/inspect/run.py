"""`saelab inspect`: an SAE and a store in, a static dashboard site out (the `inspect` experiment stage)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from saelab.inspect.autointerp import attach_found
from saelab.inspect.collect import collect
from saelab.inspect.compat import Inputs, open_inputs
from saelab.inspect.config import InspectConfig
from saelab.inspect.site import Dashboards, check_out, write_site
from saelab.inspect.weights import logit_lens, nearest
from saelab.models import Model
from saelab.sae import get_architecture

# Hooks whose activations are summed into the residual stream, so the final norm and unembedding apply.
RESIDUAL_HOOKS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")


def run(cfg: InspectConfig, progress: bool = True) -> dict[str, Any]:
    """Build the report in cfg.out; returns where it is and what it took."""
    t0 = time.perf_counter()
    check_out(cfg.out, cfg.overwrite)
    inputs = open_inputs(cfg.sae, cfg.store, cfg.hook, cfg.model)
    d = dashboards(cfg, inputs, progress=progress)
    index = write_site(cfg.out, d, cfg.shard_latents, overwrite=cfg.overwrite)
    attach_found(cfg.out, cfg.sae)  # explanations and scores that `saelab autointerp` kept beside the SAE
    seconds = time.perf_counter() - t0
    return {
        "index": str(index),
        "latents": len(d.stats.latents),
        "tokens": d.stats.n_tokens,
        "seconds": round(seconds, 1),
        "dead": int((d.stats.count == 0).sum()),
        "serve": f"saelab inspect serve {cfg.out}",
    }


def dashboards(
    cfg: InspectConfig, inputs: Inputs, latents: np.ndarray | None = None, progress: bool = True
) -> Dashboards:
    """Compute every part of the dashboards of `latents` (default: all)."""
    sae, store, hook = inputs.sae, inputs.store, inputs.hook
    model = Model.load(inputs.model_name)
    if model.tokenizer is None:
        raise ValueError(f"model {inputs.model_name} has no tokenizer; contexts cannot be shown as text")
    stats = collect(
        sae,
        store,
        hook,
        tokens=cfg.tokens,
        batch_windows=cfg.batch_windows,
        latents=latents,
        top_k=cfg.top_k,
        quantiles=cfg.quantiles,
        per_quantile=cfg.per_quantile,
        bins=cfg.bins,
        left=cfg.left,
        right=cfg.right,
        max_active=cfg.max_active,
        include_bos=cfg.include_bos,
        moments=cfg.aip,
        seed=cfg.seed,
        progress=progress,
    )
    W_dec = np.asarray(sae.params.W_dec)  # (d_sae, d_in)
    lens = None
    if hook.endswith(RESIDUAL_HOOKS) and sae.cfg.d_in == model.cfg.d_model:
        lens = logit_lens(model, W_dec[stats.latents], cfg.n_logits)
    cosine = nearest(stats.latents, W_dec, cfg.n_neighbours)
    aip = None
    if cfg.aip and stats.moments is not None:
        from saelab.whitening import estimate_metric

        aip = nearest(stats.latents, W_dec, cfg.n_neighbours, metric=estimate_metric(stats.moments))
    vocab = model.tokenizer.decode_batch([[i] for i in range(model.cfg.vocab_size)], skip_special_tokens=False)
    exact = get_architecture(sae.cfg.architecture).encode_sparse is not None  # k codes per token, no cap
    meta = {
        "sae": str(cfg.sae),
        "store": str(cfg.store),
        "hook": hook,
        "model": inputs.model_name,
        "architecture": sae.cfg.architecture,
        "k": sae.cfg.k if exact else None,
        "max_active": None if exact else cfg.max_active,
        "d_in": sae.cfg.d_in,
        "left": cfg.left,
        "right": cfg.right,
        "quantiles": cfg.quantiles,
        "per_quantile": cfg.per_quantile,
        "include_bos": cfg.include_bos,
        "aip": aip is not None,
        "logit_lens": lens is not None,
    }
    return Dashboards(stats, lens, cosine, aip, vocab, meta)
