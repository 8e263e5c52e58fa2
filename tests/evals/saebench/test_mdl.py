"""SAEBench MDL against sae-bench 0.6's own functions (`evals/mdl/main.py`): the description length of
`calculate_dl` and the quantised reconstruction error of `check_quantised_features_reach_mse_threshold`.

As written, those functions read a module-level `config` and call `.cuda()`: the test sets the config (batch 1)
and makes `.cuda()` the identity on this CPU build, leaving their arithmetic as it is."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from saelab.evals.saebench import mdl
from saelab.sae import decode, encode
from tests.evals.saebench.conftest import D_IN, twin_sae
from tests.peer_modules import peer


class _Buffer:
    def __init__(self, x):
        self.x = x

    def get_filtered_llm_batch(self):
        return self.x


@pytest.mark.parametrize("num_bins", [4, 16])
def test_description_length_and_quantised_error_match_saebench(monkeypatch, num_bins: int) -> None:
    """DL (bits) agrees to 1e-4 relative and sqrt(MSE)/d_in to 1e-5 relative: each side bins its own float32
    codes (they differ by ~1e-5) on its own range, so only a code within that of a bin edge could land
    differently, which random codes avoid. Some latents' codes exceed 100 (their bins stretch), the others' bins
    end at 100."""
    main = peer("sae_bench.evals.mdl.main")
    twin = twin_sae(seed=8, enc_scale=12.0)
    monkeypatch.setattr(main, "config", main.MDLEvalConfig(sae_batch_size=1), raising=False)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    rng = np.random.default_rng(9)
    x = rng.normal(size=(400, D_IN)).astype(np.float32) * 3
    z = np.asarray(encode(twin.params, jnp.asarray(x), twin.cfg))
    top = np.maximum(z.max(0), 100.0).astype(np.float32)
    assert (z.max(0) > 100).any() and (z.max(0) < 100).any()
    with torch.no_grad():  # sae-bench's running maximum of its own codes, from 100 (as its eval starts it)
        top_t = torch.clamp(twin.torch_sae.encode(torch.from_numpy(x)).max(0).values, min=100.0)
    bins = main.build_bins(torch.zeros(len(top)), top_t, num_bins=num_bins)
    with torch.no_grad():
        dl = main.calculate_dl(len(top), bins, "cpu", _Buffer(torch.from_numpy(x)), twin.torch_sae, k=16)
        _, rmse = main.check_quantised_features_reach_mse_threshold(
            bins, _Buffer(torch.from_numpy(x)), twin.torch_sae, 0.01, twin.torch_sae, k=16
        )
    ours_dl = mdl.description_length(z, top, num_bins)
    dec = lambda p, c: decode(p, c)
    ours_rmse = float(
        mdl.quantised_rmse(twin.params, jnp.asarray(x), jnp.asarray(z), top, k=16, num_bins=num_bins, dec=dec)
    )
    np.testing.assert_allclose(ours_dl, dl, rtol=1e-4)
    np.testing.assert_allclose(ours_rmse, rmse, rtol=1e-5)
