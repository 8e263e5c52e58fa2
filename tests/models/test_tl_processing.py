"""TransformerLens-style processing of a random tiny GPT-2 against the algebra TransformerLens states: folding
and centring change no logit, centring makes the residual stream mean-zero over d_model, centring the
unembedding shifts logits by a per-position constant, folding value biases moves hook_z by -b_V."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.models import HookContext, Model, forward
from saelab.models import gpt2 as gpt2_family
from saelab.models import tl_processing as tl
from saelab.models.config import config_from_hf

HF_CONFIG = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "vocab_size": 61, "n_positions": 16}
RESID = [f"blocks.{i}.hook_{s}" for i in range(2) for s in ("resid_pre", "resid_mid", "resid_post")]


def _hf_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """GPT2LMHeadModel tensors (Conv1D weights [in, out]) with random LayerNorm weights and biases everywhere,
    and embeddings with a large mean over d_model, so that every processing step has something to move."""
    r = np.random.default_rng(seed)
    d, v, n = HF_CONFIG["n_embd"], HF_CONFIG["vocab_size"], HF_CONFIG["n_positions"]
    g = lambda *s, scale=0.3: (r.normal(size=s) * scale).astype(np.float32)
    t = {"transformer.wte.weight": g(v, d) + 0.5, "transformer.wpe.weight": g(n, d) - 0.2}
    for i in range(HF_CONFIG["n_layer"]):
        p = f"transformer.h.{i}."
        t |= {
            p + "ln_1.weight": 1 + g(d),
            p + "ln_1.bias": g(d),
            p + "attn.c_attn.weight": g(d, 3 * d),
            p + "attn.c_attn.bias": g(3 * d),
            p + "attn.c_proj.weight": g(d, d),
            p + "attn.c_proj.bias": g(d) + 0.1,
            p + "ln_2.weight": 1 + g(d),
            p + "ln_2.bias": g(d),
            p + "mlp.c_fc.weight": g(d, 4 * d),
            p + "mlp.c_fc.bias": g(4 * d),
            p + "mlp.c_proj.weight": g(4 * d, d),
            p + "mlp.c_proj.bias": g(d) - 0.1,
        }
    return t | {"transformer.ln_f.weight": 1 + g(d), "transformer.ln_f.bias": g(d)}


@pytest.fixture(scope="module")
def tiny():
    cfg = config_from_hf(HF_CONFIG, name="tiny-gpt2")
    params = gpt2_family.weights_from_hf(_hf_tensors().__getitem__, cfg, jnp.float32)
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, HF_CONFIG["vocab_size"], (3, 10)), jnp.int32)
    return cfg, params, tokens


def _run(params, cfg, tokens, names=()):
    out = forward(params, cfg, tokens, None, HookContext(cache=names))
    return np.asarray(out.logits, np.float64), {k: np.asarray(v, np.float64) for k, v in out.cache.items()}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_folding_layer_norm_changes_no_logit_and_leaves_unit_norms(tiny) -> None:
    cfg, params, tokens = tiny
    ref, _ = _run(params, cfg, tokens)
    folded = tl.fold_layer_norm(tl.untie_unembed(params))
    got, _ = _run(folded, cfg, tokens)
    assert _rel(got, ref) < 1e-5
    lp = folded.layers[0]
    assert np.all(np.asarray(lp.ln1.w) == 1) and np.all(np.asarray(lp.ln2.b) == 0)
    # the reading matrices are centred over d_model (their input is orthogonal to all-ones)
    for w in (lp.attn.W_Q, lp.attn.W_K, lp.attn.W_V, lp.mlp.W_in, folded.unembed.T):  # W_U is (d_model, vocab)
        assert np.abs(np.asarray(w).mean(0)).max() < 1e-6
    # ln_1's bias went into b_Q as TransformerLens folds it: b_Q + ln_b . W_Q (before scaling by ln_w)
    raw = params.layers[0]
    want = np.asarray(raw.attn.b_Q) + np.einsum("m,mhd->hd", np.asarray(raw.ln1.b), np.asarray(raw.attn.W_Q))
    np.testing.assert_allclose(np.asarray(lp.attn.b_Q), want, rtol=1e-5, atol=1e-6)


def test_centring_writing_weights_changes_no_logit_and_centres_the_residual_stream(tiny) -> None:
    cfg, params, tokens = tiny
    ref, raw = _run(params, cfg, tokens, RESID)
    assert min(np.abs(raw[h].mean(-1)).max() for h in RESID) > 0.05  # not mean-zero before
    centred = tl.centre_writing_weights(tl.untie_unembed(params))
    got, cache = _run(centred, cfg, tokens, RESID)
    assert _rel(got, ref) < 1e-5
    for h in RESID:
        scale = np.abs(cache[h]).max()
        assert np.abs(cache[h].mean(-1)).max() < 1e-6 * scale, h
        # the stream itself is the original one less its mean over d_model
        np.testing.assert_allclose(cache[h], raw[h] - raw[h].mean(-1, keepdims=True), atol=1e-5 * scale)


def test_centring_the_tied_embedding_without_untying_would_change_logits(tiny) -> None:
    """Why processing unties W_U: GPT-2's unembedding is W_E, and centring W_E must not centre W_U."""
    cfg, params, tokens = tiny
    ref, _ = _run(params, cfg, tokens)
    tied = tl.centre_writing_weights(params)
    assert tied.unembed is None
    got, _ = _run(tied, cfg, tokens)
    assert _rel(got, ref) > 1e-3


def test_centring_the_unembedding_shifts_logits_by_a_constant_per_position(tiny) -> None:
    cfg, params, tokens = tiny
    base = tl.untie_unembed(params)
    ref, _ = _run(base, cfg, tokens)
    got, _ = _run(tl.centre_unembed(base), cfg, tokens)
    shift = got - ref  # (batch, seq, vocab)
    assert np.abs(shift).max() > 1e-2  # the logits did move
    np.testing.assert_allclose(shift, np.broadcast_to(shift[..., :1], shift.shape), atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(got.mean(-1), 0.0, atol=1e-5 * np.abs(ref).max())  # logits now mean-zero
    lsm = lambda x: x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)
    np.testing.assert_allclose(lsm(got), lsm(ref), atol=1e-5)


def test_folding_value_biases_moves_hook_z_by_minus_b_v_and_changes_no_logit(tiny) -> None:
    cfg, params, tokens = tiny
    z = "blocks.1.attn.hook_z"
    ref, raw = _run(params, cfg, tokens, (z, "blocks.1.hook_attn_out"))
    got, cache = _run(tl.fold_value_bias(params), cfg, tokens, (z, "blocks.1.hook_attn_out"))
    assert _rel(got, ref) < 1e-5
    b_v = np.asarray(params.layers[1].attn.b_V, np.float64)  # (heads, d_head)
    np.testing.assert_allclose(cache[z], raw[z] - b_v, atol=1e-5)
    np.testing.assert_allclose(cache["blocks.1.hook_attn_out"], raw["blocks.1.hook_attn_out"], atol=1e-5)


def test_model_load_with_transformer_lens_processing(tiny, tmp_path) -> None:
    from safetensors.numpy import save_file

    cfg, params, tokens = tiny
    save_file(_hf_tensors(), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(HF_CONFIG))
    plain = Model.load(str(tmp_path))
    done = Model.load(str(tmp_path), process="transformer_lens")
    assert done.weights_hash == f"{plain.weights_hash}+transformer_lens"
    ref, _ = plain.run_with_cache(tokens, [])
    got, cache = done.run_with_cache(tokens, RESID)
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    np.testing.assert_allclose(jax.nn.log_softmax(got), jax.nn.log_softmax(ref), atol=1e-4)
    np.testing.assert_allclose(got.mean(-1), 0.0, atol=1e-5 * np.abs(ref).max())  # centred unembedding
    for h in RESID:
        assert np.abs(np.asarray(cache[h]).mean(-1)).max() < 1e-5 * np.abs(np.asarray(cache[h])).max(), h
    assert not np.asarray(done.params.layers[0].attn.b_V).any()  # value biases folded into b_O


def test_processing_is_refused_where_it_is_not_defined(tiny) -> None:
    import dataclasses

    cfg, params, _ = tiny
    with pytest.raises(ValueError, match="implemented for GPT-2"):
        tl.process_transformer_lens(params, dataclasses.replace(cfg, family="llama"))
    with pytest.raises(ValueError, match="unknown model processing"):
        tl.process_weights(params, cfg, "folded")  # type: ignore[arg-type]
