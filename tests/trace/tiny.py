"""A tiny random Llama in both saelab (JAX) and circuit-tracer (TransformerLens), with random transcoders,
for the trace's tests: the same weights, the same tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from saelab.models import Model
from saelab.sae import JumpReLUConfig, SAEParams, sae_config
from saelab.sae.clt import CLTParams
from saelab.sae.formats import circuit_tracer as ct
from saelab.trace import transcoders as tt

N_LAYERS, D, VOCAB, D_SAE, BOS = 2, 32, 97, 24, 1


class Tiny(NamedTuple):
    model: Model  # saelab's
    path: Path  # the Hugging Face folder
    hf_cfg: Any  # transformers.LlamaConfig


def tiny_llama(tmp: Path, seed: int = 0) -> Tiny:
    """A random 2-layer Llama (grouped-query attention, random norm weights) saved and loaded by saelab."""
    import torch
    import transformers

    torch.manual_seed(seed)
    hf_cfg = transformers.LlamaConfig(
        hidden_size=D, intermediate_size=48, num_hidden_layers=N_LAYERS, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64, tie_word_embeddings=False,
        initializer_range=0.2,
    )  # fmt: skip
    hf = transformers.AutoModelForCausalLM.from_config(hf_cfg).to(torch.float32).eval()
    with torch.no_grad():
        for _, w in hf.named_parameters():
            if w.ndim == 1:
                w.copy_(torch.randn_like(w) * 0.2 + 1.0)
    hf.save_pretrained(tmp / "model", safe_serialization=True)
    word_tokenizer().save(str(tmp / "model" / "tokenizer.json"))
    return Tiny(Model.load(str(tmp / "model")), tmp / "model", hf_cfg)


def word_tokenizer():
    """A word-level tokenizer of the tiny vocabulary: <unk>, <s> (BOS), </s>, then w3 .. w96."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": BOS, "</s>": 2} | {f"w{i}": i for i in range(3, VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


def random_plts(seed: int = 1, skip: bool = True) -> list[tuple[SAEParams, JumpReLUConfig]]:
    """Random JumpReLU transcoders (with a skip term), one a layer, dense enough to have many features."""
    r = np.random.default_rng(seed)
    f = lambda *s, scale=0.4: jnp.asarray(r.normal(size=s) * scale, jnp.float32)
    cfg = JumpReLUConfig(d_in=D, d_sae=D_SAE, d_out=D, skip=skip)
    theta = lambda: jnp.asarray(r.uniform(0.0, 0.3, size=D_SAE), jnp.float32)
    return [
        (
            SAEParams(
                f(D, D_SAE),
                f(D_SAE, scale=0.2),
                f(D_SAE, D),
                f(D, scale=0.1),
                theta(),
                f(D, D, scale=0.05) if skip else None,
            ),
            cfg,
        )
        for _ in range(N_LAYERS)
    ]


def random_clt(seed: int = 2):
    """A random JumpReLU cross-layer transcoder over both layers."""
    r = np.random.default_rng(seed)
    n = lambda *s: jnp.asarray(r.normal(size=s) * 0.3, jnp.float32)
    theta = jnp.asarray(r.uniform(0.0, 0.3, size=(N_LAYERS, D_SAE)), jnp.float32)
    W_dec = tuple(n(D_SAE, N_LAYERS - l, D) for l in range(N_LAYERS))
    p = CLTParams(n(N_LAYERS, D, D_SAE), n(N_LAYERS, D_SAE) * 0.2, W_dec, n(N_LAYERS, D) * 0.3, theta)
    cfg = sae_config(architecture="clt", n_layers=N_LAYERS, d_in=D, d_sae=D_SAE, activation="jumprelu")
    return p, cfg


def plt_transcoders(layers) -> tt.TraceTranscoders:
    return tt.from_layers(layers, model_name="tiny-llama", scan="tiny/plt")


def transcoder_set(kind: str) -> tt.TraceTranscoders:
    """The random per-layer set ("plt") or the random CLT ("clt") of the tests."""
    return plt_transcoders(random_plts()) if kind == "plt" else tt.from_clt(*random_clt())


def tokens(seed: int = 4, n: int = 9) -> np.ndarray:
    """BOS then n random ids."""
    r = np.random.default_rng(seed)
    return np.concatenate([[BOS], r.integers(2, VOCAB, size=n)]).astype(np.int64)


class _Tokenizer:
    """What circuit-tracer asks of a tokenizer on token-id input: special ids and decode."""

    all_special_ids = [BOS]
    bos_token_id = pad_token_id = eos_token_id = BOS
    padding_side = "right"
    vocab_size = VOCAB

    def decode(self, ids) -> str:
        ids = [ids] if np.ndim(ids) == 0 else list(np.asarray(ids).reshape(-1))
        return "".join(f"<{int(i)}>" for i in ids)


def circuit_tracer_model(tiny: Tiny, folder: Path, monkeypatch):
    """circuit-tracer's TransformerLens replacement model of the same Llama with the transcoders saved in
    `folder` (saelab's circuit-tracer export)."""
    import huggingface_hub.constants
    import torch
    import transformers
    import yaml

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_ENABLE_HF_TRANSFER", False, raising=False)
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.cross_layer_transcoder import load_clt
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny.path).to(torch.float32).eval()
    tl_cfg = HookedTransformerConfig(
        n_layers=N_LAYERS, d_model=D, d_head=8, n_heads=4, n_key_value_heads=2, d_mlp=48, d_vocab=VOCAB, n_ctx=64,
        act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8,
        rotary_base=10000.0, gated_mlp=True, final_rms=True, eps=tiny.hf_cfg.rms_norm_eps,
        original_architecture="LlamaForCausalLM", rotary_adjacent_pairs=False, dtype=torch.float32,
        model_name="tiny-llama", device="cpu",
    )  # fmt: skip
    meta = yaml.safe_load((folder / "config.yaml").read_text())
    cpu, f32 = torch.device("cpu"), torch.float32
    if meta["model_kind"] == "cross_layer_transcoder":
        tcs = load_clt(str(folder), meta["feature_input_hook"], meta["feature_output_hook"], None, cpu, f32)
    else:
        paths = {l: str(folder / f"layer_{l}.safetensors") for l in range(N_LAYERS)}
        tcs = load_transcoder_set(
            paths, scan=meta["scan"], feature_input_hook=meta["feature_input_hook"],
            feature_output_hook=meta["feature_output_hook"], device=cpu, dtype=f32,
        )  # fmt: skip
    tl = TransformerLensReplacementModel(tl_cfg)
    tl.load_and_process_state_dict(
        convert_llama_weights(hf, tl_cfg), fold_ln=False, center_writing_weights=False, center_unembed=False
    )
    tl._configure_replacement_model(tcs)
    tl.tokenizer = _Tokenizer()
    return tl


def save_plts(layers, folder: Path) -> Path:
    return ct.save_transcoder_set(folder, layers, model_name="tiny-llama", scan="tiny/plt")


def save_clt(p, cfg, folder: Path) -> Path:
    return ct.save_clt(folder, p, cfg, model_name="tiny-llama", scan="tiny/clt")
