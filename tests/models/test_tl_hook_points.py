"""TransformerLens's hook points beyond the residual stream (hook_embed, attn.hook_q/k/v, attn.hook_rot_q/k,
attn.hook_attn_scores, attn.hook_pattern, mlp.hook_pre/pre_linear, ln_final.hook_normalized): each against
the tensor transformers computes on test_parity's random checkpoints, which names each family has, where the
global names stop a forward, edits at the new points, and the same points through the KV cache."""

from __future__ import annotations

import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch  # the reference: the torch extra, which `just setup` installs

from saelab.models import HookContext, Model, config_from_hf, hook_layer, hook_names, validate_hook_names
from saelab.models.kv_cache import empty_cache
from saelab.models.transformer import forward, forward_cached
from tests.models.small import sliced_smollm2
from tests.models.test_parity import CONFIGS, VOCAB, _save
from tests.models.torch_reference import hf_run

_ATTN = ("hook_q", "hook_k", "hook_v", "hook_rot_q", "hook_rot_k", "hook_attn_scores", "hook_pattern")


def _close(ours, ref, what: str, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Within rtol of the reference's largest magnitude, plus atol (as test_parity's hidden states)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    assert np.abs(ours - ref).max() <= rtol * np.abs(ref).max() + atol, what


def _hf_modules(hf, family: str, i: int) -> dict[str, object]:
    """The torch modules whose outputs are layer i's q/k/v projections and MLP pre-activations."""
    if family == "gpt2":
        block = hf.transformer.h[i]
        return {"qkv": block.attn.c_attn, "pre": block.mlp.c_fc}
    if family == "gpt_neox":
        block = hf.gpt_neox.layers[i]
        return {"qkv": block.attention.query_key_value, "pre": block.mlp.dense_h_to_4h}
    block = hf.model.layers[i]
    a = block.self_attn
    return {"q": a.q_proj, "k": a.k_proj, "v": a.v_proj, "pre": block.mlp.gate_proj, "pre_linear": block.mlp.up_proj}


def _hf_run(hf, family: str, n_layers: int, tokens: np.ndarray, mask: np.ndarray, monkeypatch) -> dict:
    """transformers' forward on the padded batch with every tensor the new hook points correspond to."""
    got: dict[str, object] = {}
    handles = []
    for i in range(n_layers):
        for key, module in _hf_modules(hf, family, i).items():
            handles.append(module.register_forward_hook(lambda m, a, o, k=f"{i}.{key}": got.setdefault(k, o)))
    if family == "gpt2":
        for key, module in (("embed", hf.transformer.wte), ("pos_embed", hf.transformer.wpe)):
            handles.append(module.register_forward_hook(lambda m, a, o, k=key: got.setdefault(k, o)))
    # The eager attention function gets the rotated queries and keys (keys before repeat_kv): one call a layer.
    rotated: list[tuple] = []
    modeling = sys.modules[type(hf).__module__]
    eager = modeling.eager_attention_forward

    def capture(module, query, key, *args, **kwargs):
        rotated.append((query, key))
        return eager(module, query, key, *args, **kwargs)

    monkeypatch.setattr(modeling, "eager_attention_forward", capture)
    out = hf_run(hf, tokens, mask, output_attentions=True)
    for h in handles:
        h.remove()
    got = {k: v.numpy() for k, v in got.items()}
    got["rotated"] = [(q.numpy().transpose(0, 2, 1, 3), k.numpy().transpose(0, 2, 1, 3)) for q, k in rotated]
    got["hidden"] = [h.numpy() for h in out.hidden_states]
    got["attentions"] = [a.numpy() for a in out.attentions]
    return got


def _hf_qkv(got: dict, family: str, i: int, cfg) -> tuple[np.ndarray, ...]:
    """Layer i's (q, k, v), each (batch, seq, heads, d_head), from the projections' outputs."""
    b, s = got[f"{i}.pre"].shape[:2]
    if family == "gpt2":  # c_attn: [q | k | v] along the last axis
        return tuple(x.reshape(b, s, cfg.n_heads, cfg.d_head) for x in np.split(got[f"{i}.qkv"], 3, axis=-1))
    if family == "gpt_neox":  # query_key_value: (heads, [q, k, v], d_head)
        qkv = got[f"{i}.qkv"].reshape(b, s, cfg.n_heads, 3, cfg.d_head)
        return qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]
    return (
        got[f"{i}.q"].reshape(b, s, cfg.n_heads, cfg.d_head),
        got[f"{i}.k"].reshape(b, s, cfg.n_kv_heads, cfg.d_head),
        got[f"{i}.v"].reshape(b, s, cfg.n_kv_heads, cfg.d_head),
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_new_hook_points_match_transformers(name: str, tmp_path, monkeypatch) -> None:
    import transformers

    _save(name, tmp_path)
    model = Model.load(str(tmp_path))
    cfg = model.cfg
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32, attn_implementation="eager")
    tokens = np.random.default_rng(0).integers(0, VOCAB, size=(3, 12)).astype(np.int32)
    mask = np.ones_like(tokens)
    mask[1, :4] = 0  # left padding
    mask[2, :1] = 0
    real = mask.astype(bool)
    logits, c = model.run_with_cache(tokens, model.hook_names(), pad_mask=mask)
    got = _hf_run(hf.eval(), cfg.family, cfg.n_layers, tokens, mask, monkeypatch)

    _close(np.asarray(c["hook_embed"]) + np.asarray(c.get("hook_pos_embed", 0.0)), got["hidden"][0], "embedding")
    if cfg.family == "gpt2":  # token and position embeddings apart
        _close(c["hook_embed"], got["embed"], "hook_embed")
        _close(c["hook_pos_embed"], got["pos_embed"], "hook_pos_embed")
    _close(np.asarray(c["ln_final.hook_normalized"])[real], got["hidden"][-1][real], "ln_final.hook_normalized")
    scale = (cfg.query_pre_attn_scalar or cfg.d_head) ** -0.5
    for i in range(cfg.n_layers):
        h = lambda n, i=i: np.asarray(c[f"blocks.{i}.{n}"])
        for ours, ref, what in zip(
            (h("attn.hook_q"), h("attn.hook_k"), h("attn.hook_v")), _hf_qkv(got, cfg.family, i, cfg), "qkv", strict=True
        ):
            _close(ours[real], ref[real], f"layer {i} hook_{what}")
        assert h("attn.hook_k").shape[2] == cfg.n_kv_heads  # grouped-query keys keep their own head count
        _close(h("mlp.hook_pre")[real], got[f"{i}.pre"][real], f"layer {i} mlp.hook_pre")
        if "pre_linear" in _hf_modules(hf, cfg.family, i):
            _close(h("mlp.hook_pre_linear")[real], got[f"{i}.pre_linear"][real], f"layer {i} mlp.hook_pre_linear")
        q_rot, k_rot = got["rotated"][i]
        if cfg.family != "gpt2":
            _close(h("attn.hook_rot_q")[real], q_rot[real], f"layer {i} hook_rot_q")
            _close(h("attn.hook_rot_k")[real], k_rot[real], f"layer {i} hook_rot_k")
        # Pattern: transformers' attention weights, on real query rows (fully masked pad rows differ).
        pattern, scores = h("attn.hook_pattern"), h("attn.hook_attn_scores")
        assert pattern.shape == scores.shape == (3, cfg.n_heads, 12, 12)
        rows = real[:, None, :, None]
        _close(np.where(rows, pattern, 0), np.where(rows, got["attentions"][i], 0), f"layer {i} hook_pattern")
        # Scores: the rotated q . k of transformers, scaled and soft-capped, where the mask lets a key in.
        k_rep = np.repeat(k_rot, cfg.n_heads // k_rot.shape[2], axis=2)
        ref = np.einsum("bqhd,bkhd->bhqk", q_rot, k_rep) * scale
        if cfg.attn_logit_softcap is not None:
            ref = np.tanh(ref / cfg.attn_logit_softcap) * cfg.attn_logit_softcap
        allowed = rows & (scores > np.finfo(np.float32).min)
        _close(np.where(allowed, scores, 0), np.where(allowed, ref, 0), f"layer {i} hook_attn_scores")
        assert (got["attentions"][i][np.broadcast_to(rows, scores.shape) & ~allowed] == 0).all()
    assert logits is not None


def _cfg(model_type: str) -> object:
    hf = {"model_type": model_type, "vocab_size": 50, "num_hidden_layers": 2, "hidden_size": 16}
    hf |= {"num_attention_heads": 2, "intermediate_size": 32, "n_layer": 2, "n_embd": 16, "n_head": 2}
    return config_from_hf(hf | {"n_positions": 8})


def test_each_family_names_its_own_points() -> None:
    llama, gpt2, neox = _cfg("llama"), _cfg("gpt2"), _cfg("gpt_neox")
    for cfg in (llama, gpt2, neox):
        names = hook_names(cfg)
        assert names[0] == "hook_embed" and names[-1] == "ln_final.hook_normalized"
        assert set(names) <= set(hook_names(cfg.n_layers))  # a number of blocks: every family's points
        validate_hook_names(["hook_embed", "blocks.1.attn.hook_pattern", "ln_final.hook_normalized"], cfg)
    assert "hook_pos_embed" in hook_names(gpt2) and "hook_pos_embed" not in hook_names(llama)
    assert "blocks.0.attn.hook_rot_q" in hook_names(neox) and "blocks.0.attn.hook_rot_q" not in hook_names(gpt2)
    assert "blocks.0.mlp.hook_pre_linear" in hook_names(llama)
    assert "blocks.0.mlp.hook_pre_linear" not in hook_names(neox)
    with pytest.raises(ValueError, match="unknown hook point.*hook_rot_k"):
        validate_hook_names(["blocks.0.attn.hook_rot_k"], gpt2)
    assert hook_layer("hook_embed") == hook_layer("hook_pos_embed") == 0
    assert hook_layer("ln_final.hook_normalized", 2) == 2
    with pytest.raises(ValueError, match="needs n_layers"):
        hook_layer("ln_final.hook_normalized")
    with pytest.raises(ValueError, match="not a hook point"):
        hook_layer("hook_unembed")


@pytest.fixture(scope="module")
def small() -> Model:
    return sliced_smollm2(2)


def _tokens() -> tuple[np.ndarray, np.ndarray]:
    tokens = np.random.default_rng(2).integers(1, 500, size=(2, 7)).astype(np.int32)
    mask = np.ones_like(tokens)
    mask[1, :2] = 0
    return tokens, mask


def test_global_names_stop_where_they_are_computed(small: Model) -> None:
    tokens, mask = _tokens()
    logits, c = small.run_with_cache(tokens, ["hook_embed"], stop_at_layer="auto", pad_mask=mask)
    assert logits is None
    np.testing.assert_array_equal(np.asarray(c["hook_embed"]), np.asarray(small.params.embed)[tokens])
    logits, c = small.run_with_cache(tokens, ["ln_final.hook_normalized"], stop_at_layer="auto", pad_mask=mask)
    plain, _ = small.run_with_cache(tokens, [], pad_mask=mask)
    assert logits is not None
    np.testing.assert_allclose(np.asarray(logits), np.asarray(plain), rtol=0, atol=1e-5)
    w_u = np.asarray(small.params.embed if small.params.unembed is None else small.params.unembed)  # (vocab, d_model)
    ref = np.einsum("bsm,vm->bsv", np.asarray(c["ln_final.hook_normalized"]), w_u)
    np.testing.assert_allclose(np.asarray(logits), ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="would skip"):
        small.run_with_cache(tokens, ["ln_final.hook_normalized"], stop_at_layer=2, pad_mask=mask)


def test_edits_at_the_new_points_reach_the_logits(small: Model) -> None:
    tokens, mask = _tokens()
    plain, _ = small.run_with_cache(tokens, [], pad_mask=mask)
    zero_pattern = small.run_with_hooks(
        tokens, {"blocks.1.attn.hook_pattern": lambda p: p.at[:, 2].set(0.0)}, pad_mask=mask
    )
    zero_z = small.run_with_hooks(tokens, {"blocks.1.attn.hook_z": lambda z: z.at[:, :, 2].set(0.0)}, pad_mask=mask)
    np.testing.assert_allclose(np.asarray(zero_pattern), np.asarray(zero_z), rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(zero_pattern) - np.asarray(plain)).max() > 1e-4
    # Pre-rotary q edits pass through rotary: doubling hook_q doubles hook_rot_q.
    double = {"blocks.0.attn.hook_q": lambda q: 2 * q}
    ctx = HookContext(hooks=double, cache=["blocks.0.attn.hook_rot_q"])
    doubled = forward(small.params, small.cfg, jnp.asarray(tokens), jnp.asarray(mask), ctx).cache
    _, base = small.run_with_cache(tokens, ["blocks.0.attn.hook_rot_q"], pad_mask=mask)
    np.testing.assert_allclose(
        np.asarray(doubled["blocks.0.attn.hook_rot_q"]), 2 * np.asarray(base["blocks.0.attn.hook_rot_q"]), atol=1e-5
    )
    for hook in ("hook_embed", "blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_pre_linear", "blocks.1.attn.hook_v"):
        edited = small.run_with_hooks(tokens, {hook: lambda x: 0.5 * x}, pad_mask=mask)
        assert np.abs(np.asarray(edited) - np.asarray(plain)).max() > 1e-4, hook


def test_the_kv_cache_path_records_the_same_points(small: Model) -> None:
    """Prefill all but the last token, then decode it: its q/k/v and its pattern row over the cache's slots
    equal the full forward's last position."""
    tokens, mask = _tokens()
    cfg, params = small.cfg, small.params
    names = [f"blocks.1.attn.{n}" for n in _ATTN] + ["hook_embed", "ln_final.hook_normalized"]
    full = forward(params, cfg, jnp.asarray(tokens), jnp.asarray(mask), HookContext(cache=names))
    kv = empty_cache(cfg, jnp.asarray(mask))
    _, kv = forward_cached(params, cfg, jnp.asarray(tokens[:, :-1]), kv, HookContext())
    ctx = HookContext(cache=names)
    logits, _ = forward_cached(params, cfg, jnp.asarray(tokens[:, -1:]), kv, ctx)
    np.testing.assert_allclose(np.asarray(logits[:, -1]), np.asarray(full.logits[:, -1]), rtol=1e-4, atol=1e-4)
    for n in names:
        ours, ref = np.asarray(ctx.cache[n]), np.asarray(full.cache[n])
        last = ref[:, :, -1:] if n.endswith(("hook_pattern", "hook_attn_scores")) else ref[:, -1:]
        assert ours.shape == last.shape, n
        if n.endswith("hook_attn_scores"):  # masked slots hold the float32 minimum in both
            ok = last > np.finfo(np.float32).min
            np.testing.assert_array_equal(ours > np.finfo(np.float32).min, ok)
            ours, last = np.where(ok, ours, 0), np.where(ok, last, 0)
        np.testing.assert_allclose(ours, last, rtol=1e-4, atol=1e-5, err_msg=n)
