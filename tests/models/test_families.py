"""Qwen2/3, Gemma 3 and GPT-NeoX beyond logit parity: every hook point's shape and how the hooks add up,
an intervention at hook_z, and the config spellings of published checkpoints (Pythia's rotary_pct and
embed_out, Gemma 3's rope_local_base_freq and sliding_window_pattern, Qwen2.5's use_sliding_window)."""

from __future__ import annotations

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.models import Model, config_from_hf
from saelab.models.layers import rms_norm
from tests.peer_modules import needed

NEW = ["qwen3-bias-untied", "gemma3", "pythia-parallel"]  # one per new block (parity covers the variants)


def _saved(name: str, tmp_path_factory):
    needed("torch")
    from tests.models.test_parity import _save

    path = tmp_path_factory.mktemp(name)
    _save(name, path)
    return path


@pytest.fixture(scope="module", params=NEW)
def model(request, tmp_path_factory) -> Model:
    return Model.load(str(_saved(request.param, tmp_path_factory)))


def _tokens() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 97, size=(2, 9)).astype(np.int32)


def test_every_hook_point_has_its_shape_and_the_stream_adds_up(model: Model) -> None:
    cfg, tokens = model.cfg, _tokens()
    logits, c = model.run_with_cache(tokens, model.hook_names())
    plain, _ = model.run_with_cache(tokens, [])
    # Recording changes nothing (but rounding: asking for hook_result sums the heads in another order).
    np.testing.assert_allclose(np.asarray(logits), np.asarray(plain), rtol=0, atol=1e-5)
    b, s = tokens.shape
    close = lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5)
    for layer in range(cfg.n_layers):
        h = lambda n, layer=layer: c[f"blocks.{layer}.{n}"]
        assert h("attn.hook_z").shape == (b, s, cfg.n_heads, cfg.d_head)
        assert h("attn.hook_result").shape == (b, s, cfg.n_heads, cfg.d_model)
        assert h("mlp.hook_post").shape == (b, s, cfg.d_mlp)
        for n in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
            assert h(n).shape == (b, s, cfg.d_model), n
        b_o = model.params.layers[layer].attn.b_O
        heads = h("attn.hook_result").sum(2) + (0.0 if b_o is None else b_o)
        if cfg.family == "gemma3":  # the post-attention norm sits between the heads and the stream
            heads = rms_norm(heads, model.params.layers[layer].ln1_post.w, cfg.norm_eps, offset=1.0)
        close(heads, h("hook_attn_out"))
        close(h("hook_resid_pre") + h("hook_attn_out"), h("hook_resid_mid"))
        close(h("hook_resid_mid") + h("hook_mlp_out"), h("hook_resid_post"))
        if layer + 1 < cfg.n_layers:
            close(h("hook_resid_post"), c[f"blocks.{layer + 1}.hook_resid_pre"])


def test_zeroing_a_head_at_hook_z_equals_zeroing_its_output_rows(model: Model) -> None:
    tokens = _tokens()
    hooked = model.run_with_hooks(tokens, {"blocks.1.attn.hook_z": lambda z: z.at[:, :, 1].set(0.0)})
    layers = list(model.params.layers)
    attn = layers[1].attn
    layers[1] = layers[1]._replace(attn=attn._replace(W_O=attn.W_O.at[1].set(0.0)))  # (heads, d_head, d_model)
    edited = Model(model.cfg, model.params._replace(layers=tuple(layers)))
    ref, _ = edited.run_with_cache(tokens, [])
    np.testing.assert_allclose(np.asarray(hooked), np.asarray(ref), rtol=1e-5, atol=1e-5)
    plain, _ = model.run_with_cache(tokens, [])
    assert np.abs(np.asarray(hooked) - np.asarray(plain)).max() > 1e-4


def test_pythia_checkpoint_spelling_loads_the_same_model(tmp_path_factory) -> None:
    """Pythia's hub configs say rotary_pct / rotary_emb_base (transformers 5 writes rope_parameters); the
    unembedding is embed_out there and in what transformers writes, lm_head in the module, both are read."""
    from safetensors.numpy import load_file, save_file

    path = _saved("neox-sequential", tmp_path_factory)
    new = Model.load(str(path))
    hf = json.loads((path / "config.json").read_text())
    rope = hf.pop("rope_parameters")
    hf |= {"rotary_pct": rope["partial_rotary_factor"], "rotary_emb_base": rope["rope_theta"]}
    (path / "config.json").write_text(json.dumps(hf))
    (weights,) = path.glob("*.safetensors")
    tensors = load_file(str(weights))
    tensors["lm_head.weight"] = tensors.pop("embed_out.weight")
    save_file(tensors, str(weights))
    old = Model.load(str(path))
    assert dataclasses.replace(old.cfg, name="") == dataclasses.replace(new.cfg, name="")
    assert old.cfg.rotary_fraction == 0.5 and old.cfg.rope_theta == 500.0
    np.testing.assert_array_equal(np.asarray(old.params.unembed), np.asarray(new.params.unembed))


def _gemma3_hf() -> dict:
    base = dict(model_type="gemma3_text", hidden_size=64, intermediate_size=96, num_hidden_layers=3)
    return base | dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=97, sliding_window=4)


def test_gemma3_config_old_and_new_spellings_agree() -> None:
    """transformers 4.x wrote rope_theta, rope_local_base_freq, rope_scaling and sliding_window_pattern;
    5.x writes rope_parameters per layer type and layer_types."""
    old = _gemma3_hf() | dict(
        rope_theta=1e6, rope_local_base_freq=1e4, rope_scaling={"rope_type": "linear", "factor": 8.0}
    )
    new = _gemma3_hf() | dict(
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        },
    )
    got_old = config_from_hf(old | {"sliding_window_pattern": 2})
    assert got_old == config_from_hf(new)
    assert got_old.layer_types == ("sliding_attention", "full_attention", "sliding_attention")
    assert (got_old.rope_theta, got_old.rope_local_theta) == (1e6, 1e4)
    assert dict(got_old.rope_scaling) == {"rope_type": "linear", "factor": 8.0}
    assert got_old.tie_embeddings and got_old.qk_norm
    # The published default: every sixth layer global.
    six = config_from_hf(old | {"num_hidden_layers": 7})
    assert [i for i, t in enumerate(six.layer_types) if t == "full_attention"] == [5]
    local_scaled = new | {"rope_parameters": {**new["rope_parameters"], "sliding_attention": {"rope_type": "linear"}}}
    with pytest.raises(ValueError, match="sliding layers with rope scaling"):
        config_from_hf(local_scaled)


def test_qwen_configs_as_published() -> None:
    """Qwen2.5 ships use_sliding_window false with a sliding_window value: no window. With the window on and
    no layer_types, the layers from max_window_layers on slide. Qwen3's attention_bias covers o_proj too."""
    base = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, vocab_size=97)
    q25 = config_from_hf(base | dict(model_type="qwen2", use_sliding_window=False, sliding_window=32768))
    assert q25.sliding_window is None and not q25.is_sliding(2)
    assert q25.attention_bias and not q25.attn_out_bias and not q25.qk_norm and not q25.tie_embeddings
    win = config_from_hf(
        base | dict(model_type="qwen2", use_sliding_window=True, sliding_window=5, max_window_layers=2)
    )
    assert [win.is_sliding(i) for i in range(3)] == [False, False, True]
    q3 = config_from_hf(base | dict(model_type="qwen3", head_dim=24, attention_bias=True))
    assert q3.qk_norm and q3.attention_bias and q3.attn_out_bias and q3.d_head == 24


def test_neox_activation_and_defaults() -> None:
    base = dict(model_type="gpt_neox", hidden_size=64, intermediate_size=96, num_hidden_layers=2)
    base |= dict(num_attention_heads=4, vocab_size=97)
    cfg = config_from_hf(base)
    assert cfg.parallel_residual and cfg.activation == "gelu" and cfg.rotary_fraction == 0.25 and not cfg.tie_embeddings
    assert cfg.n_kv_heads == 4 and cfg.d_head == 16 and cfg.attention_bias and cfg.attn_out_bias
    assert config_from_hf(base | {"hidden_act": "gelu_new"}).activation == "gelu_tanh"
    with pytest.raises(ValueError, match="hidden_act 'relu' is not supported"):
        config_from_hf(base | {"hidden_act": "relu"})


def test_partial_rotary_rotates_only_the_first_dims() -> None:
    """rotary_fraction 0.5 on d_head 8: dims 4..7 pass through; dims 0..3 rotate as a 4-dim rope would."""
    from saelab.models.layers import apply_rope, rope_inv_freq

    base = dict(model_type="gpt_neox", hidden_size=32, intermediate_size=8, num_hidden_layers=1)
    cfg = config_from_hf(base | dict(num_attention_heads=4, vocab_size=7, rotary_pct=0.5))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 3, 2, 8)), jnp.float32)
    pos = jnp.arange(3)[None]
    inv = rope_inv_freq(cfg)
    assert inv.shape == (2,)
    np.testing.assert_allclose(np.asarray(inv), [1.0, 0.01], rtol=1e-6)  # 1 / 10000^(2i/4)
    out = np.asarray(apply_rope(x, pos, inv))
    np.testing.assert_array_equal(out[..., 4:], np.asarray(x)[..., 4:])
    # Hand rotate-half on dims (0, 2) and (1, 3) by angles pos * inv.
    xn, ang = np.asarray(x), np.arange(3)[None, :, None, None] * np.asarray(inv)
    cos, sin = np.cos(ang), np.sin(ang)
    ref = np.concatenate([xn[..., :2] * cos - xn[..., 2:4] * sin, xn[..., 2:4] * cos + xn[..., :2] * sin], -1)
    np.testing.assert_allclose(out[..., :4], ref, rtol=1e-6, atol=1e-6)


def test_multimodal_gemma3_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="multimodal Gemma 3.*gemma3_text"):
        config_from_hf({"model_type": "gemma3", "text_config": {}})
    with pytest.raises(ValueError, match="attention_bias is not supported"):
        config_from_hf(_gemma3_hf() | {"attention_bias": True})
