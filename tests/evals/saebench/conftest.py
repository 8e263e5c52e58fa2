"""Shared pieces of the SAEBench parity tests: a small random ReLU SAE as saelab parameters and as the SAELens
SAE sae-bench's functions take, built from the same weights."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.sae import ReLUConfig, SAEParams
from tests.peer_modules import peer

D_IN, D_SAE = 16, 48
HOOK = "blocks.0.hook_resid_post"


class TwinSAE(NamedTuple):
    params: SAEParams
    cfg: ReLUConfig
    torch_sae: object  # sae_lens.StandardSAE with the same weights


def twin_sae(seed: int = 0, d_in: int = D_IN, d_sae: int = D_SAE, enc_scale: float = 1.0) -> TwinSAE:
    """A random ReLU SAE (b_dec applied to the input, as both default) in saelab and in SAELens."""
    sae_lens = peer("sae_lens")
    import torch

    rng = np.random.default_rng(seed)
    w_enc = (rng.normal(size=(d_in, d_sae)) * enc_scale / np.sqrt(d_in)).astype(np.float32)
    w_dec = rng.normal(size=(d_sae, d_in)).astype(np.float32) / np.sqrt(d_in)
    b_enc = rng.normal(size=d_sae).astype(np.float32) * 0.1
    b_dec = rng.normal(size=d_in).astype(np.float32) * 0.1
    cfg = ReLUConfig(d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=True)
    params = SAEParams(jnp.asarray(w_enc), jnp.asarray(b_enc), jnp.asarray(w_dec), jnp.asarray(b_dec), None)
    sae = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=True))
    with torch.no_grad():
        for name, value in (("W_enc", w_enc), ("b_enc", b_enc), ("W_dec", w_dec), ("b_dec", b_dec)):
            getattr(sae, name).copy_(torch.from_numpy(value))
    sae.cfg.metadata.hook_name, sae.cfg.metadata.model_name = HOOK, "toy"
    peer("sae_bench.sae_bench_utils.general_utils")._standardize_sae_cfg(sae.cfg)  # as sae-bench prepares an SAE
    return TwinSAE(params, cfg, sae)


@pytest.fixture(scope="module")
def twin() -> TwinSAE:
    return twin_sae()
