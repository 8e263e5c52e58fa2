"""A family added from outside the package (tests/models/toy_family.py plus one `register` line) runs the one
transformer block with its own norm placement, checked against a forward written out by hand in NumPy."""

from __future__ import annotations

from unittest import mock

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.models import HookContext, config_from_hf, forward, hook_names, registry
from saelab.models.registry import register, weights_from_hf
from tests.models import toy_family

HF = dict(model_type="toy_post", hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4)
HF |= dict(num_key_value_heads=2, vocab_size=11, rms_norm_eps=1e-6, rope_theta=100.0)
D, H, KV, DH, F, V = 16, 4, 2, 4, 24, 11


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    with mock.patch.dict(registry.FAMILIES), mock.patch.dict(registry._BY_MODEL_TYPE):  # unregistered after
        register(toy_family.FAMILY)  # the registry line
        yield


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    g = lambda *s: rng.normal(0, 0.4, s).astype(np.float32)
    t = {"model.embed_tokens.weight": g(V, D), "model.norm.weight": 1 + g(D)}
    for i in range(HF["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t |= {p + "self_attn.q_proj.weight": g(H * DH, D), p + "self_attn.k_proj.weight": g(KV * DH, D)}
        t |= {p + "self_attn.v_proj.weight": g(KV * DH, D), p + "self_attn.o_proj.weight": g(D, H * DH)}
        t |= {
            p + "mlp.gate_proj.weight": g(F, D),
            p + "mlp.up_proj.weight": g(F, D),
            p + "mlp.down_proj.weight": g(D, F),
        }
        t |= {p + "post_attention_layernorm.weight": 1 + g(D), p + "post_feedforward_layernorm.weight": 1 + g(D)}
    return t


def _rms(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * w


def _rope(x: np.ndarray) -> np.ndarray:  # (seq, heads, d_head), rotate-half layout
    ang = np.arange(x.shape[0])[:, None] * 100.0 ** (-np.arange(0, DH, 2) / DH)  # (seq, d_head / 2)
    cos, sin = np.cos(np.concatenate([ang, ang], -1))[:, None], np.sin(np.concatenate([ang, ang], -1))[:, None]
    x1, x2 = np.split(x, 2, -1)
    return x * cos + np.concatenate([-x2, x1], -1) * sin


def _numpy_forward(t: dict[str, np.ndarray], tokens: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits (seq, vocab) and each block's resid_mid for one row: x += n1(attn(x)); x += n2(mlp(x))."""
    x, s, mids = t["model.embed_tokens.weight"][tokens].astype(np.float64), len(tokens), []
    for i in range(HF["num_hidden_layers"]):
        w = {k.removeprefix(f"model.layers.{i}."): v for k, v in t.items()}
        q = _rope((x @ w["self_attn.q_proj.weight"].T).reshape(s, H, DH))
        k = np.repeat(_rope((x @ w["self_attn.k_proj.weight"].T).reshape(s, KV, DH)), H // KV, axis=1)
        v = np.repeat((x @ w["self_attn.v_proj.weight"].T).reshape(s, KV, DH), H // KV, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(DH) + np.triu(np.full((s, s), -np.inf), 1)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        z = np.einsum("hqk,khd->qhd", p / p.sum(-1, keepdims=True), v).reshape(s, H * DH)
        x = x + _rms(z @ w["self_attn.o_proj.weight"].T, w["post_attention_layernorm.weight"])
        mids.append(x)
        gate, up = x @ w["mlp.gate_proj.weight"].T, x @ w["mlp.up_proj.weight"].T
        mlp = (gate / (1 + np.exp(-gate)) * up) @ w["mlp.down_proj.weight"].T
        x = x + _rms(mlp, w["post_feedforward_layernorm.weight"])
    return _rms(x, t["model.norm.weight"]) @ t["model.embed_tokens.weight"].T, mids


def test_toy_family_forward_matches_numpy() -> None:
    t = _tensors()
    cfg = config_from_hf(HF, name="toy")  # found by model_type through the registry
    assert cfg.family == "toy_post" and cfg.norm_placement == "post"
    params = weights_from_hf(t.__getitem__, cfg, jnp.float32)
    assert params.layers[0].ln1 is None and params.layers[0].ln2 is None and params.layers[0].ln1_post is not None
    tokens = np.array([[3, 1, 4, 1, 5, 9, 2, 6]], np.int32)
    mids = tuple(f"blocks.{i}.hook_resid_mid" for i in range(cfg.n_layers))
    out = forward(params, cfg, jnp.asarray(tokens), None, HookContext(cache=mids))
    want, want_mids = _numpy_forward(t, tokens[0])
    np.testing.assert_allclose(np.asarray(out.logits[0]), want, rtol=1e-4, atol=1e-4)
    for name, mid in zip(mids, want_mids, strict=True):
        np.testing.assert_allclose(np.asarray(out.cache[name][0]), mid, rtol=1e-4, atol=1e-4)
    # no pre-MLP norm, so no ln2.hook_normalized point; the rest of the block's points are there
    names = hook_names(cfg)
    assert "blocks.0.ln2.hook_normalized" not in names and "blocks.1.mlp.hook_pre_linear" in names
