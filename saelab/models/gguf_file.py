"""Read a GGUF file (llama.cpp's format) without torch: config, dequantised weights and tokenizer.

Weights are dequantised with the `gguf` package and renamed to Hugging Face names, so the family modules'
`weights_from_hf` loads them unchanged. llama.cpp permutes Q and K rows for its interleaved RoPE; we undo
that, as transformers does, to get back the rotate-half layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from saelab.models.config import ModelConfig, config_from_hf

_LLAMA_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LLAMA_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
# llama.cpp's `tokenizer.ggml.pre` names -> pre-tokenizer. "smollm" splits digits one by one, like the
# original SmolLM2 tokenizer.json; the others fall back to GPT-2's byte-level split.
_DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact"}


def read_gguf(path: str | Path) -> tuple[ModelConfig, dict[str, np.ndarray], Tokenizer, dict[str, int]]:
    """(config, HF-named float32 weights, tokenizer, special ids) from a GGUF file."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    meta = _metadata(reader)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(
            f"GGUF architecture {arch!r} in {path} is not supported for GGUF loading; supported: llama "
            "(load Gemma 2 and GPT-2 from a Hugging Face directory of config.json + safetensors instead)"
        )
    cfg = config_from_hf(_llama_hf_config(meta, reader), name=str(path))
    weights = {}
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        name = _hf_name(t.name)
        if name.endswith("q_proj.weight"):
            w = _unpermute(w, cfg.n_heads)
        elif name.endswith("k_proj.weight"):
            w = _unpermute(w, cfg.n_kv_heads)
        weights[name] = w
    tokenizer, special = _tokenizer(meta)
    return cfg, weights, tokenizer, special


def cache_dir() -> Path:
    """Where dequantised GGUF weights are cached ($SAELAB_CACHE, default ~/.cache/saelab)."""
    return Path(os.environ.get("SAELAB_CACHE", Path.home() / ".cache" / "saelab"))


def read_gguf_cached(
    path: str | Path, fingerprint: str
) -> tuple[ModelConfig, dict[str, np.ndarray], Tokenizer, dict[str, int]]:
    """`read_gguf`, with the dequantised result cached as safetensors keyed by the file's fingerprint.

    Parsing a GGUF's metadata and dequantising takes seconds; a cached load is a memory map."""
    from safetensors.numpy import load_file, save_file

    d = cache_dir() / f"gguf-{fingerprint}-{_config_schema()}"  # a cache of other ModelConfig fields is stale
    if (d / "done").exists():
        meta = json.loads((d / "meta.json").read_text())
        cfg = ModelConfig(**{k: _tuplify(v) for k, v in meta["config"].items()})
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        return cfg, load_file(str(d / "weights.safetensors")), tok, meta["special"]
    cfg, weights, tok, special = read_gguf(path)
    try:
        tmp = d.with_name(d.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        save_file(weights, str(tmp / "weights.safetensors"))
        tok.save(str(tmp / "tokenizer.json"))
        (tmp / "meta.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "special": special}))
        (tmp / "done").write_text(str(path))
        os.replace(tmp, d)
    except OSError:  # a read-only or full cache, or another process won the race: only costs speed
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return cfg, weights, tok, special


def _config_schema() -> str:
    """A short hash of ModelConfig's field names, so a cached config with other fields is never read back."""
    return hashlib.sha256(",".join(f.name for f in dataclasses.fields(ModelConfig)).encode()).hexdigest()[:8]


def _tuplify(v):
    return tuple(_tuplify(x) for x in v) if isinstance(v, list) else v


def _metadata(reader: Any) -> dict[str, Any]:
    out = {}
    for key, field in reader.fields.items():
        try:
            out[key] = field.contents()
        except Exception:  # noqa: BLE001 - a field the gguf package cannot decode is not one we use
            continue
    return out


def _llama_hf_config(meta: dict[str, Any], reader: Any) -> dict[str, Any]:
    a = "llama."
    n_vocab = meta.get(a + "vocab_size") or len(meta["tokenizer.ggml.tokens"])
    names = {t.name for t in reader.tensors}
    return {
        "model_type": "llama",
        "num_hidden_layers": meta[a + "block_count"],
        "hidden_size": meta[a + "embedding_length"],
        "intermediate_size": meta[a + "feed_forward_length"],
        "num_attention_heads": meta[a + "attention.head_count"],
        "num_key_value_heads": meta.get(a + "attention.head_count_kv", meta[a + "attention.head_count"]),
        "rms_norm_eps": meta[a + "attention.layer_norm_rms_epsilon"],
        "rope_theta": meta.get(a + "rope.freq_base", 10000.0),
        "max_position_embeddings": meta.get(a + "context_length", 8192),
        "vocab_size": n_vocab,
        "tie_word_embeddings": "output.weight" not in names,
    }


def _hf_name(name: str) -> str:
    if name in _LLAMA_NAMES:
        return _LLAMA_NAMES[name]
    m = _BLOCK.match(name)
    if not m or m.group(2) not in _LLAMA_BLOCK:
        raise ValueError(f"unexpected tensor {name!r} in a llama GGUF file")
    return f"model.layers.{m.group(1)}.{_LLAMA_BLOCK[m.group(2)]}.{m.group(3)}"


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (interleaved -> rotate-half RoPE layout)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tokenizer(meta: dict[str, Any]) -> tuple[Tokenizer, dict[str, int]]:
    """Byte-level BPE from the GGUF vocabulary and merges; control tokens become special tokens."""
    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise ValueError(
            f"GGUF tokenizer model {meta.get('tokenizer.ggml.model')!r} is not supported; supported: gpt2 "
            "(byte-level BPE)"
        )
    tokens = list(meta["tokenizer.ggml.tokens"])
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if meta.get("tokenizer.ggml.pre") in _DIGIT_SPLIT_PRE:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    special_tokens = [t for t, ty in zip(tokens, types, strict=True) if ty == 3]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    special = {
        k: int(meta[f"tokenizer.ggml.{k}_token_id"])
        for k in ("bos", "eos", "padding")
        if f"tokenizer.ggml.{k}_token_id" in meta
    }
    return tok, special
