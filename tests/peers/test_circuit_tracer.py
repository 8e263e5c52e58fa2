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


def test_circuit_tracers_replacement_model_on_a_tiny_llama_equals_saelabs(tmp_path, monkeypatch):
    """circuit-tracer's own replacement model (TransformerLens backend, `from_config`'s two steps with the weights
    loaded between them) on a random 2-layer Llama with saelab's CLT export: its clean logits, its features
    (read at mlp.hook_in, position 0 zeroed) and its error nodes (MLP output minus the CLT's reconstruction)
    equal saelab's model and CLT on the same tokens, float32, to 1e-5 of the largest magnitude."""
    peer("circuit_tracer")
    import huggingface_hub.constants
    import torch
    import transformers

    # circuit-tracer 0.5's hf_utils imports a constant huggingface-hub 1.x dropped; False = no hf_transfer
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_ENABLE_HF_TRANSFER", False, raising=False)
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.cross_layer_transcoder import load_clt
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    from saelab.models import Model

    n_layers, d, vocab = 2, 32, 97
    torch.manual_seed(0)
    hf_cfg = transformers.LlamaConfig(
        hidden_size=d, intermediate_size=48, num_hidden_layers=n_layers, num_attention_heads=4,
        num_key_value_heads=4, vocab_size=vocab, max_position_embeddings=64, tie_word_embeddings=False,
    )  # fmt: skip
    hf = transformers.AutoModelForCausalLM.from_config(hf_cfg).to(torch.float32).eval()
    with torch.no_grad():  # random norm weights, so a hook before or after the weight would differ
        for _, w in hf.named_parameters():
            if w.ndim == 1:
                w.copy_(torch.randn_like(w) * 0.2 + 1.0)
    hf.save_pretrained(tmp_path / "model", safe_serialization=True)
    tl_cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=d, d_head=8, n_heads=4, d_mlp=48, d_vocab=vocab, n_ctx=64, act_fn="silu",
        normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8, rotary_base=10000.0,
        gated_mlp=True, final_rms=True, eps=hf_cfg.rms_norm_eps, original_architecture="LlamaForCausalLM",
        rotary_adjacent_pairs=False, dtype=torch.float32, model_name="tiny-llama", device="cpu",
    )  # fmt: skip
    r = np.random.default_rng(3)
    n = lambda *s: jax.numpy.asarray(r.normal(size=s) * 0.3, jax.numpy.float32)
    theta = jax.numpy.asarray(r.uniform(0.0, 0.3, size=(n_layers, D_SAE)), jax.numpy.float32)
    W_dec = tuple(n(D_SAE, n_layers - l, d) for l in range(n_layers))
    p = CLTParams(n(n_layers, d, D_SAE), n(n_layers, D_SAE) * 0.2, W_dec, n(n_layers, d), theta)
    cfg = sae_config(architecture="clt", n_layers=n_layers, d_in=d, d_sae=D_SAE, activation="jumprelu")
    meta = ct.save_clt(tmp_path / "clt", p, cfg, model_name="tiny-llama") / "config.yaml"
    hooks = yaml.safe_load(meta.read_text())
    cpu, f32 = torch.device("cpu"), torch.float32
    clt = load_clt(str(tmp_path / "clt"), hooks["feature_input_hook"], hooks["feature_output_hook"], None, cpu, f32)
    tl = TransformerLensReplacementModel(tl_cfg)
    tl.load_and_process_state_dict(
        convert_llama_weights(hf, tl_cfg), fold_ln=False, center_writing_weights=False, center_unembed=False
    )
    tl._configure_replacement_model(clt)
    tokens = r.integers(0, vocab, size=12)
    theirs = tl.setup_attribution(torch.from_numpy(tokens))

    names = [f"blocks.{l}.{h}" for h in (ct.INPUT_HOOK, ct.OUTPUT_HOOK) for l in range(n_layers)]
    logits, cache = Model.load(str(tmp_path / "model")).run_with_cache(tokens[None].astype(np.int32), names)
    stack = lambda hook: np.stack([np.asarray(cache[f"blocks.{l}.{hook}"][0]) for l in range(n_layers)], 1)
    codes = np.array(encode(p, stack(ct.INPUT_HOOK), cfg))  # (pos, L, d_sae)
    codes[0] = 0  # circuit-tracer drops the features of position 0 (BOS)
    errors = stack(ct.OUTPUT_HOOK) - np.asarray(decode(p, codes))
    errors[0] = 0
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())
    close(theirs.logits[0].detach().numpy(), np.asarray(logits[0]))
    close(theirs.activation_matrix.to_dense().numpy().transpose(1, 0, 2), codes)
    close(theirs.error_vectors.detach().numpy().transpose(1, 0, 2), errors)
    assert (codes[1:] > 0).sum() > 10
