"""circuit-tracer (0.5) loads saelab's exports with its own loaders (`load_clt`, `load_transcoder_set`, reading
the files lazily as it does for attribution) and its encode / decode on random inputs equal saelab's, float32,
to 1e-5 relative (1e-6 absolute); the test fails, never skips, without circuit-tracer (tests/peer_modules.py)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import yaml

from saelab.sae import JumpReLUConfig, SAEParams, sae_config
from saelab.sae.clt import CLTParams, decode, encode
from saelab.sae.formats import circuit_tracer as ct
from saelab.sae.registry import encode as sae_encode
from saelab.sae.registry import forward
from tests.peer_modules import peer

L, D, D_SAE, POS = 3, 8, 16, 7
RTOL, ATOL = 1e-5, 1e-6


def _rng_params(r: np.random.Generator) -> CLTParams:
    n = lambda *s: jax.numpy.asarray(r.normal(size=s) * 0.5, jax.numpy.float32)
    W_dec = tuple(n(D_SAE, L - l, D) for l in range(L))
    theta = jax.numpy.asarray(r.uniform(0.0, 0.5, size=(L, D_SAE)), jax.numpy.float32)
    return CLTParams(n(L, D, D_SAE), n(L, D_SAE) * 0.2, W_dec, n(L, D), theta)


def test_circuit_tracer_runs_saelabs_clt_export_as_saelab_does(tmp_path):
    peer("circuit_tracer")
    import torch
    from circuit_tracer.transcoder.cross_layer_transcoder import load_clt

    r = np.random.default_rng(0)
    cfg = sae_config(architecture="clt", n_layers=L, d_in=D, d_sae=D_SAE, activation="jumprelu")
    p = _rng_params(r)
    ct.save_clt(tmp_path, p, cfg, model_name="toy")
    meta = yaml.safe_load((tmp_path / "config.yaml").read_text())
    theirs = load_clt(
        str(tmp_path),
        feature_input_hook=meta["feature_input_hook"],
        feature_output_hook=meta["feature_output_hook"],
        device=torch.device("cpu"),
        dtype=torch.float32,
        lazy_decoder=True,
        lazy_encoder=True,
    )
    x = r.normal(size=(POS, L, D)).astype(np.float32)  # saelab: (tokens, L, d_in); circuit-tracer: (L, pos, d)
    ours_codes = np.asarray(encode(p, x, cfg))
    with torch.no_grad():
        their_codes = theirs.encode(torch.from_numpy(x.transpose(1, 0, 2).copy()))  # (L, pos, d_sae)
        their_out = theirs.decode(their_codes.to_sparse())  # (L, pos, d_out)
    assert (ours_codes[-1] > 0).any()  # circuit-tracer sizes its output by the last position with a feature
    np.testing.assert_allclose(their_codes.numpy().transpose(1, 0, 2), ours_codes, rtol=RTOL, atol=ATOL)
    ours_out = np.asarray(decode(p, ours_codes))
    np.testing.assert_allclose(their_out.numpy().transpose(1, 0, 2), ours_out, rtol=RTOL, atol=ATOL)


def test_circuit_tracer_runs_saelabs_transcoder_set_export_as_saelab_does(tmp_path):
    peer("circuit_tracer")
    import torch
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set

    r = np.random.default_rng(1)
    cfg = JumpReLUConfig(d_in=D, d_sae=D_SAE, d_out=D, skip=True)
    f = lambda *s: jax.numpy.asarray(r.normal(size=s) * 0.5, jax.numpy.float32)
    theta = lambda: jax.numpy.asarray(r.uniform(0.0, 0.5, size=D_SAE), jax.numpy.float32)
    layers = [(SAEParams(f(D, D_SAE), f(D_SAE), f(D_SAE, D), f(D), theta(), f(D, D)), cfg) for _ in range(L)]
    ct.save_transcoder_set(tmp_path, layers, model_name="toy")
    meta = yaml.safe_load((tmp_path / "config.yaml").read_text())
    paths = {l: str(tmp_path / f"layer_{l}.safetensors") for l in range(L)}
    theirs = load_transcoder_set(
        paths,
        scan=meta["scan"],
        feature_input_hook=meta["feature_input_hook"],
        feature_output_hook=meta["feature_output_hook"],
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    x = r.normal(size=(L, POS, D)).astype(np.float32)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        their_codes = theirs.encode(xt)
        their_out = theirs.decode(their_codes, xt)  # with the skip term
    for l, (q, c) in enumerate(layers):
        np.testing.assert_allclose(their_codes[l].numpy(), sae_encode(q, x[l], c), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(their_out[l].numpy(), forward(q, x[l], c), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("lazy", [True, False])
def test_circuit_tracer_reads_a_topk_clt_as_jumprelu_at_the_given_thresholds(lazy, tmp_path):
    """What circuit-tracer runs for a TopK CLT: JumpReLU at the thresholds it was exported with."""
    peer("circuit_tracer")
    import torch
    from circuit_tracer.transcoder.cross_layer_transcoder import load_clt

    r = np.random.default_rng(2)
    p = _rng_params(r)
    topk = sae_config(architecture="clt", n_layers=L, d_in=D, d_sae=D_SAE, activation="topk", k=4)
    ct.save_clt(tmp_path, p._replace(threshold=None), topk, model_name="toy", thresholds=np.asarray(p.threshold))
    cpu, f32 = torch.device("cpu"), torch.float32
    theirs = load_clt(str(tmp_path), lazy_decoder=lazy, lazy_encoder=lazy, device=cpu, dtype=f32)
    jump = sae_config(architecture="clt", n_layers=L, d_in=D, d_sae=D_SAE, activation="jumprelu")
    x = r.normal(size=(POS, L, D)).astype(np.float32)
    with torch.no_grad():
        their_codes = theirs.encode(torch.from_numpy(x.transpose(1, 0, 2).copy()))
        their_out = theirs.decode(their_codes.to_sparse()).numpy().transpose(1, 0, 2)
    ours = encode(p, x, jump)
    np.testing.assert_allclose(their_codes.numpy().transpose(1, 0, 2), ours, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(their_out, decode(p, ours), rtol=RTOL, atol=ATOL)
