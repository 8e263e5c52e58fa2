"""circuit-tracer's format (saelab.sae.formats.circuit_tracer): a CLT and a per-layer transcoder set round-trip
through the folder bit for bit, the files have the names, keys and shapes circuit-tracer 0.5's loaders read,
and a TopK model needs the JumpReLU thresholds it is written with (tests/peers/test_circuit_tracer.py loads
the exports in circuit-tracer itself)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

from saelab.sae import JumpReLUConfig, SAEParams, TopKConfig, init_params, sae_config
from saelab.sae.clt import encode
from saelab.sae.clt import init_params as init_clt
from saelab.sae.formats import circuit_tracer as ct

L, D, D_SAE = 3, 4, 6


def _clt(activation: str):
    extra = {"k": 2} if activation == "topk" else {}
    cfg = sae_config(architecture="clt", n_layers=L, d_in=D, d_sae=D_SAE, activation=activation, **extra)
    p = init_clt(jax.random.key(0), cfg)
    r = np.random.default_rng(0)
    p = p._replace(b_enc=p.b_enc + r.normal(size=p.b_enc.shape), b_dec=p.b_dec + r.normal(size=p.b_dec.shape))
    return p, cfg


def _same(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("activation", ["topk", "jumprelu"])
def test_a_clt_round_trips_in_circuit_tracers_layout(activation, tmp_path):
    p, cfg = _clt(activation)
    theta = np.full((L, D_SAE), 0.25, np.float32) if activation == "topk" else None
    ct.save_clt(tmp_path, p, cfg, model_name="toy", thresholds=theta)
    meta = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert meta["model_kind"] == "cross_layer_transcoder"
    assert (meta["feature_input_hook"], meta["feature_output_hook"]) == ("mlp.hook_in", "mlp.hook_out")
    enc, dec = load_file(str(tmp_path / "W_enc_1.safetensors")), load_file(str(tmp_path / "W_dec_1.safetensors"))
    assert set(enc) == {"W_enc_1", "b_enc_1", "b_dec_1", "threshold_1"} and enc["W_enc_1"].shape == (D_SAE, D)
    assert dec["W_dec_1"].shape == (D_SAE, L - 1, D)
    assert ct.detect(tmp_path)
    back = ct.load(tmp_path)
    assert back.kind == "cross_layer_transcoder" and back.clt[1] == cfg and back.metadata["model_name"] == "toy"
    _same(back.clt[0], p)


def test_a_topk_model_needs_thresholds_and_a_jumprelu_one_refuses_them(tmp_path):
    p, cfg = _clt("topk")
    with pytest.raises(ValueError, match="no TopK activation"):
        ct.save_clt(tmp_path, p, cfg, model_name="toy")
    p, cfg = _clt("jumprelu")
    with pytest.raises(ValueError, match="its own thresholds"):
        ct.save_clt(tmp_path, p, cfg, model_name="toy", thresholds=np.zeros((L, D_SAE)))


def test_a_transcoder_set_round_trips_and_a_foreign_one_loads_as_jumprelu(tmp_path):
    layers = []
    for l in range(L):
        tc = (TopKConfig if l % 2 else JumpReLUConfig)(d_in=D, d_sae=D_SAE, d_out=D, **({"k": 2} if l % 2 else {}))
        layers.append((init_params(jax.random.key(l), tc), tc))
    theta = [None if l % 2 == 0 else np.full(D_SAE, 0.1, np.float32) for l in range(L)]
    with pytest.raises(ValueError, match="own thresholds"):
        ct.save_transcoder_set(tmp_path, layers, model_name="toy", thresholds=[np.zeros(D_SAE)] * L)
    ct.save_transcoder_set(tmp_path / "set", layers, model_name="toy", thresholds=theta)
    t = load_file(str(tmp_path / "set" / "layer_1.safetensors"))
    assert t["W_enc"].shape == (D_SAE, D) and t["activation_function.threshold"].shape == (D_SAE,)
    back = ct.load(tmp_path / "set")
    assert back.kind == "transcoder_set" and [c for _, c in back.layers] == [c for _, c in layers]
    for (p, _), (q, _) in zip(back.layers, layers, strict=True):
        _same(p, q)
    # without saelab's entry (circuit-tracer's own files): JumpReLU, thresholds as written
    cfg_file = tmp_path / "set" / "config.yaml"
    meta = yaml.safe_load(cfg_file.read_text())
    cfg_file.write_text(yaml.safe_dump({k: v for k, v in meta.items() if k != "saelab"}))
    foreign = ct.load(tmp_path / "set")
    assert all(c.architecture == "jumprelu" for _, c in foreign.layers)
    assert isinstance(foreign.layers[1][0], SAEParams)
    np.testing.assert_array_equal(foreign.layers[1][0].threshold, theta[1])


def test_topk_thresholds_keep_about_k_latents_a_layer():
    p, cfg = _clt("topk")
    p = p._replace(W_enc=p.W_enc * 10, b_enc=p.b_enc * 0)  # pre-activations of unit scale, centred
    r = np.random.default_rng(3)
    x = jax.numpy.asarray(r.normal(size=(512, L, D)), jax.numpy.float32)
    theta = ct.topk_thresholds(p, x, cfg)
    assert theta.shape == (L, D_SAE) and (theta > 0).all()
    jump = sae_config(architecture="clt", n_layers=L, d_in=D, d_sae=D_SAE, activation="jumprelu")
    l0 = (np.asarray(encode(p._replace(threshold=jax.numpy.asarray(theta)), x, jump)) > 0).sum(2).mean(0)  # (L,)
    np.testing.assert_allclose(l0, cfg.k, rtol=0.35)
