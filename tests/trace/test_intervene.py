"""Interventions on the replacement model of a tiny random Llama (2 blocks, d_model 32) with random per-layer
transcoders and a random CLT: scaling by 1 changes nothing; error terms with no edits are the clean model and
scaling every error node by 0 is the model without them; zeroing every feature without error terms is the
MLP-ablated model; setting a feature moves the next layer's input by exactly (value - activation) times its
decoder row; generation equals greedy decoding by full forwards. Float32 throughout, tolerance 1e-5 of the
largest logit unless a test says otherwise."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.evals.replacement import clt_replacement, transcoder_set_replacement
from saelab.evals.splice import replace_after_bos
from saelab.models import HookContext, Model, forward
from saelab.sae import SAEParams, sae_config
from saelab.sae.clt import CLTParams
from saelab.trace.intervene import Edit, ReplacementContext, _static, edit_arrays, generate, intervene
from tests.peer_modules import needed, peer

LAYERS, D, D_SAE = 2, 32, 24
IN = tuple(f"blocks.{i}.ln2.hook_normalized" for i in range(LAYERS))
OUT = tuple(f"blocks.{i}.hook_mlp_out" for i in range(LAYERS))
HOOKS = list(zip(IN, OUT, strict=True))


def save_tiny_llama(path: Path) -> Path:
    """A random 2-block Llama in Hugging Face format with a word-level tokenizer of 64 words (w3 .. w63)."""
    torch = needed("torch")
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, 64)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=D, intermediate_size=48, num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(vocab), max_position_embeddings=128, initializer_range=0.2, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(path, safe_serialization=True)
    tok.save(str(path / "tokenizer.json"))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def model(model_dir) -> Model:
    return Model.load(str(model_dir))


def _plt_layers(seed: int = 0, b_dec: bool = True) -> list:
    """Random JumpReLU transcoders ((params, config) per block, no skip term); b_dec zero when `b_dec` is
    False."""
    r = np.random.default_rng(seed)
    n = lambda *s: jnp.asarray(r.normal(size=s) * 0.4, jnp.float32)  # noqa: E731
    cfg = sae_config(architecture="jumprelu", d_in=D, d_sae=D_SAE, d_out=D)
    layers = []
    for _ in range(LAYERS):
        theta = jnp.asarray(r.uniform(0.0, 0.3, D_SAE), jnp.float32)
        params = SAEParams(n(D, D_SAE), n(D_SAE) * 0.2, n(D_SAE, D), n(D) if b_dec else jnp.zeros(D), theta)
        layers.append((params, cfg))
    return layers


def _plt(seed: int = 0, b_dec: bool = True):
    return transcoder_set_replacement(HOOKS, _plt_layers(seed, b_dec))


def _clt(seed: int = 1):
    r = np.random.default_rng(seed)
    n = lambda *s: jnp.asarray(r.normal(size=s) * 0.4, jnp.float32)  # noqa: E731
    theta = jnp.asarray(r.uniform(0.0, 0.3, size=(LAYERS, D_SAE)), jnp.float32)
    W_dec = tuple(n(D_SAE, LAYERS - l, D) for l in range(LAYERS))
    p = CLTParams(n(LAYERS, D, D_SAE), n(LAYERS, D_SAE) * 0.2, W_dec, n(LAYERS, D), theta)
    cfg = sae_config(architecture="clt", n_layers=LAYERS, d_in=D, d_sae=D_SAE, activation="jumprelu")
    return clt_replacement(p, cfg, HOOKS)


@pytest.fixture(scope="module")
def tokens() -> jax.Array:
    t = np.random.default_rng(5).integers(3, 64, (2, 9)).astype(np.int32)
    t[:, 0] = 1  # BOS
    return jnp.asarray(t)


def _close(a, b) -> None:
    b = np.asarray(b)
    np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=1e-5 * np.abs(b).max())


@pytest.mark.parametrize("make", [_plt, _clt], ids=["plt", "clt"])
def test_scaling_by_one_changes_nothing_and_error_terms_give_the_clean_model(model, tokens, make) -> None:
    rep = make()
    ones = [Edit(l, "all", None, scale=1.0) for l in range(LAYERS)]
    for errors in (False, True):
        base = intervene(model, rep, tokens, (), errors)
        same = intervene(model, rep, tokens, ones, errors)
        _close(same.logits, base.logits)
        for a, b in zip(same.codes, base.codes, strict=True):
            _close(a, b)
    clean = forward(model.params, model.cfg, tokens, None, HookContext()).logits
    _close(intervene(model, rep, tokens, (), True).logits, clean)
    assert np.abs(np.asarray(intervene(model, rep, tokens).logits - clean)).max() > 1e-2  # the replacement differs
    no_errors = [Edit(l, "error", None, scale=0.0) for l in range(LAYERS)]
    _close(intervene(model, rep, tokens, no_errors, True).logits, intervene(model, rep, tokens, (), False).logits)


def test_zeroing_every_feature_without_error_terms_is_the_mlp_ablated_model(model, tokens) -> None:
    rep = _plt(b_dec=False)  # no decoder bias, no skip: the transcoder writes nothing when its features are 0
    zero = [Edit(l, "all", None, value=0.0) for l in range(LAYERS)]
    got = intervene(model, rep, tokens, zero, False)
    ablate = {h: replace_after_bos(jnp.zeros_like) for h in OUT}  # BOS keeps its MLP output, as the splice does
    want = forward(model.params, model.cfg, tokens, None, HookContext(hooks=ablate)).logits
    _close(got.logits, want)
    assert all(not np.asarray(c[:, 1:]).any() for c in got.codes)
    assert np.asarray(intervene(model, rep, tokens).codes[0][:, 1:]).any()  # features fire when not zeroed


@pytest.mark.parametrize("errors", [False, True], ids=["no-errors", "errors"])
def test_setting_a_feature_moves_the_next_layer_input_by_its_decoder_row(model, tokens, errors) -> None:
    """By hand: the clean replacement run plus (value - activation) * W_dec[f] added to blocks.1.hook_resid_pre
    at the edited position gives the intervened logits (and layer 1 sees exactly that input)."""
    rep, pos, value = _plt(), 4, 3.0
    codes = np.asarray(intervene(model, rep, tokens, (), errors).codes[0])  # (batch, seq, d_sae)
    f = int(np.argmax(codes[0, pos]))  # an active feature, so the edit is not just an addition
    got = intervene(model, rep, tokens, [Edit(0, f, pos, value=value)], errors)
    assert np.asarray(got.codes[0])[:, pos, f] == pytest.approx(value)
    shift = (value - codes[:, pos, f])[:, None] * np.asarray(rep.params[0].W_dec[f])[None]  # (batch, d)
    add = lambda x: x.at[:, pos].add(jnp.asarray(shift, x.dtype))  # noqa: E731
    ctx = ReplacementContext(_static(rep, errors), rep.params, edit_arrays(rep, (), errors), jnp.ones(2, bool))
    ctx.hooks = {"blocks.1.hook_resid_pre": add}
    want = forward(model.params, model.cfg, tokens, None, ctx).logits
    _close(got.logits, want)
    assert np.abs(np.asarray(got.logits - intervene(model, rep, tokens, (), errors).logits)).max() > 1e-3
    _close(got.logits[:, :pos], intervene(model, rep, tokens, (), errors).logits[:, :pos])  # causal: earlier unchanged


def test_a_clt_feature_edit_writes_every_later_layer(model, tokens) -> None:
    """A CLT feature of layer 0 decodes into layers 0 and 1: the edit equals adding (value - activation) times
    W_dec[0][f, t] at blocks.t.hook_mlp_out for t = 0, 1 (error terms on, so the MLPs stay exact otherwise)."""
    rep, pos = _clt(), 3
    codes = np.asarray(intervene(model, rep, tokens, (), True).codes[0])
    f = int(np.argmax(codes[1, pos]))
    got = intervene(model, rep, tokens, [Edit(0, f, pos, scale=-2.0)], True)
    delta = -3.0 * codes[:, pos, f]  # (batch,): -2a - a
    W = np.asarray(rep.params.W_dec[0][f])  # (2, d)
    add = lambda t: lambda x: x.at[:, pos].add(jnp.asarray(delta[:, None] * W[t][None], x.dtype))  # noqa: E731
    ctx = ReplacementContext(_static(rep, True), rep.params, edit_arrays(rep, (), True), jnp.ones(2, bool))
    ctx.hooks = {OUT[0]: add(0), OUT[1]: add(1)}
    _close(got.logits, forward(model.params, model.cfg, tokens, None, ctx).logits)


def test_generation_is_greedy_decoding_of_the_edited_replacement_model(model) -> None:
    rep, n = _plt(), 6
    prompt = "w5 w17 w40 w9"
    edits = [Edit(1, int(f), None, value=8.0) for f in (2, 11)]
    out = generate(model, rep, prompt, edits, use_error_term=True, max_new_tokens=n)
    toks = np.asarray([[1, *model.tokenizer.encode(prompt).ids] + [3] * n])  # placeholders after the prompt
    start = toks.shape[1] - n
    for t in range(start, toks.shape[1]):  # full forwards of one length (causal: later placeholders are unseen)
        toks[0, t] = int(jnp.argmax(intervene(model, rep, toks, edits, True).logits[0, t - 1]))
    assert out.edited == model.tokenizer.decode(toks[0, start:].tolist())
    ones = [Edit(l, "all", None, scale=1.0) for l in range(LAYERS)]  # two edits, as above: the same compile
    same = generate(model, rep, prompt, ones, use_error_term=True, max_new_tokens=n)
    assert same.edited == same.clean == out.clean
    assert out.edited != out.clean


@pytest.mark.parametrize(
    ("edit", "errors", "match"),
    [
        (Edit(2, 0, 1, value=1.0), False, "layer must be in"),
        (Edit(0, 0, 0, value=1.0), False, "position 0"),
        (Edit(0, 0, 1, value=1.0, scale=2.0), False, "exactly one of value"),
        (Edit(0, 0, 1), False, "exactly one of value"),
        (Edit(0, D_SAE, 1, value=1.0), False, "feature must be in"),
        (Edit(0, "error", 1, value=1.0), True, "takes no value"),
        (Edit(0, "error", 1, scale=0.0), False, "use_error_term=True"),
    ],
)
def test_bad_edits_are_named(edit, errors, match) -> None:
    with pytest.raises(ValueError, match=match):
        edit_arrays(_plt(), [edit], errors)


def test_edits_of_one_activation_twice_are_refused() -> None:
    with pytest.raises(ValueError, match="touch the same activation"):
        edit_arrays(_plt(), [Edit(0, "all", None, scale=0.0), Edit(0, 3, 2, value=1.0)], False)
    edit_arrays(_plt(), [Edit(0, 3, 2, value=1.0), Edit(0, 3, 3, value=1.0), Edit(1, "all", 2, scale=0.5)], False)


def test_cli_prints_both_continuations_of_a_circuit_tracer_transcoder_set(model_dir, tmp_path, capsys):
    """`saelab trace intervene` (its parser alone: saelab.cli wires it) on the transcoders exported in
    circuit-tracer's format: `generate` gets the parsed edits and the exported weights, and its continuations
    are printed."""
    import argparse

    from saelab.sae.formats.circuit_tracer import save_transcoder_set
    from saelab.trace import intervene as iv
    from saelab.trace.intervene_cli import parse_edit, register

    layers = _plt_layers()
    save_transcoder_set(tmp_path / "tc", layers, model_name=str(model_dir))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    argv = ["trace intervene", "w5 w17 w40", "--transcoders", str(tmp_path / "tc"), "--set", "1:2=8", "--set"]
    a = parser.parse_args([*argv, "1:11@3=-4", "--scale", "0:error=0", "--error-terms", "--max-new-tokens", "5"])
    calls, real = [], iv.generate

    def spy(model, rep, prompt, edits, use_error_term, **kw):
        calls.append((rep, prompt, list(edits), use_error_term, kw["max_new_tokens"]))
        calls[-1] += (real(model, rep, prompt, edits, use_error_term, **kw),)
        return calls[-1][-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", "200")
        mp.setattr("saelab.trace.intervene.generate", spy)
        a.fn(a)
    printed = capsys.readouterr().out
    edits = [Edit(1, 2, None, value=8.0), Edit(1, 11, 3, value=-4.0), Edit(0, "error", None, scale=0.0)]
    (rep, prompt, got, errors, n, out), *_ = calls
    assert (len(calls), prompt, got, errors, n) == (1, "w5 w17 w40", edits, True, 5)
    for (p, _), q in zip(layers, rep.params, strict=True):
        np.testing.assert_array_equal(np.asarray(q.W_dec), np.asarray(p.W_dec))
    assert out.clean in printed and out.edited in printed and out.clean != out.edited
    assert [parse_edit(s, h) for s, h in [("1:2=8", "set"), ("1:11@3=-4", "set"), ("0:error=0", "scale")]] == edits
    for bad in ("1:2", "x:2=1", "1:feature=2", "1:2@=1"):
        with pytest.raises(ValueError, match="expected L:F"):
            parse_edit(bad, "set")


@pytest.mark.parametrize("freeze", [False, True], ids=["propagating", "frozen-attention"])
def test_feature_edits_equal_circuit_tracers_feature_intervention(
    model, model_dir, tokens, tmp_path, monkeypatch, freeze
):
    """circuit-tracer's own `feature_intervention` (TransformerLens backend; attention patterns free, or frozen
    at the clean run as its default does) on the same Llama with the same CLT exported in its format: its
    logits equal saelab's edited replacement model with error terms, float32, to 1e-5 of the largest logit."""
    peer("circuit_tracer")
    import huggingface_hub.constants
    import torch
    import transformers
    import yaml

    # circuit-tracer 0.5's hf_utils imports a constant huggingface-hub 1.x dropped; False = no hf_transfer
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_ENABLE_HF_TRANSFER", False, raising=False)
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.cross_layer_transcoder import load_clt
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    from saelab.sae.formats import circuit_tracer as ct

    hf = transformers.AutoModelForCausalLM.from_pretrained(model_dir).to(torch.float32).eval()
    tl_cfg = HookedTransformerConfig(
        n_layers=LAYERS, d_model=D, d_head=8, n_heads=4, n_key_value_heads=2, d_mlp=48, d_vocab=64, n_ctx=128,
        act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8,
        rotary_base=10000.0, gated_mlp=True, final_rms=True, eps=hf.config.rms_norm_eps,
        original_architecture="LlamaForCausalLM", rotary_adjacent_pairs=False, dtype=torch.float32,
        model_name="tiny-llama", device="cpu",
    )  # fmt: skip
    rep = _clt()
    cfg = sae_config(architecture="clt", n_layers=LAYERS, d_in=D, d_sae=D_SAE, activation="jumprelu")
    meta = yaml.safe_load(
        (ct.save_clt(tmp_path / "clt", rep.params, cfg, model_name="tiny") / "config.yaml").read_text()
    )
    cpu, f32 = torch.device("cpu"), torch.float32
    clt = load_clt(str(tmp_path / "clt"), meta["feature_input_hook"], meta["feature_output_hook"], None, cpu, f32)
    tl = TransformerLensReplacementModel(tl_cfg)
    weights = convert_llama_weights(hf, tl_cfg)
    tl.load_and_process_state_dict(weights, fold_ln=False, center_writing_weights=False, center_unembed=False)
    tl._configure_replacement_model(clt)
    row = np.asarray(tokens[0])
    codes = np.asarray(intervene(model, rep, tokens[:1], (), True).codes[0][0])  # (seq, d_sae) of layer 0
    f = int(np.argmax(codes[3]))
    edits = [(0, 3, f, 6.0), (1, 5, 7, -2.5), (0, 6, f, 0.0)]  # (layer, position, feature, value): theirs
    theirs, _ = tl.feature_intervention(torch.from_numpy(row), edits, freeze_attention=freeze)
    ours = intervene(model, rep, tokens[:1], [Edit(l, i, p, value=v) for l, p, i, v in edits], True, freeze)
    _close(ours.logits[0], theirs[0].numpy())
    clean = intervene(model, rep, tokens[:1], (), True).logits
    assert np.abs(np.asarray(ours.logits - clean)).max() > 1e-2  # the edits matter
    if freeze:
        other = intervene(model, rep, tokens[:1], [Edit(l, i, p, value=v) for l, p, i, v in edits], True)
        assert np.abs(np.asarray(other.logits - ours.logits)).max() > 1e-4  # and freezing changes the result
