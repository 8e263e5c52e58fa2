"""`saelab eval` on a random GPT-2 with TransformerLens-style processing, chosen by the SAE's metadata or the
flag: log-probabilities (clean and zero-ablated CE) stay, the activations the SAE reads change."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from saelab.cli import main
from saelab.sae import TopKConfig, init_params, save_saelens
from tests.models.small import sliced_smollm2

HOOK = "blocks.0.hook_mlp_out"


def _tiny_gpt2_dir(path: Path) -> Path:
    """A random 2-block GPT-2 with SmolLM2's tokenizer (so that the eval can read text), saved as Hugging Face
    safetensors; LayerNorm weights and biases random so that folding them matters."""
    from safetensors.numpy import save_file

    tok = sliced_smollm2(2)
    vocab, d, n_pos = tok.cfg.vocab_size, 32, 64
    r = np.random.default_rng(0)
    g = lambda *s, scale=0.3: (r.normal(size=s) * scale).astype(np.float32)
    t = {"transformer.wte.weight": g(vocab, d) + 0.3, "transformer.wpe.weight": g(n_pos, d)}
    for i in range(2):
        p = f"transformer.h.{i}."
        t |= {p + "ln_1.weight": 1 + g(d), p + "ln_1.bias": g(d), p + "ln_2.weight": 1 + g(d), p + "ln_2.bias": g(d)}
        t |= {p + "attn.c_attn.weight": g(d, 3 * d), p + "attn.c_attn.bias": g(3 * d)}
        t |= {p + "attn.c_proj.weight": g(d, d), p + "attn.c_proj.bias": g(d)}
        t |= {p + "mlp.c_fc.weight": g(d, 4 * d), p + "mlp.c_fc.bias": g(4 * d)}
        t |= {p + "mlp.c_proj.weight": g(4 * d, d), p + "mlp.c_proj.bias": g(d) + 0.2}
    t |= {"transformer.ln_f.weight": 1 + g(d), "transformer.ln_f.bias": g(d)}
    path.mkdir()
    save_file(t, str(path / "model.safetensors"))
    hf = {"model_type": "gpt2", "n_embd": d, "n_layer": 2, "n_head": 4, "vocab_size": vocab, "n_positions": n_pos}
    hf |= {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}
    (path / "config.json").write_text(json.dumps(hf))
    tok.tokenizer.save(str(path / "tokenizer.json"))
    return path


def test_eval_processes_the_model_as_the_sae_says(tmp_path: Path, capsys) -> None:
    model_dir = _tiny_gpt2_dir(tmp_path / "gpt2")
    cfg = TopKConfig(d_in=32, d_sae=64, k=4)
    meta = {"model_name": str(model_dir), "hook_name": HOOK, "model_processing": "transformer_lens"}
    sae = save_saelens(tmp_path / "sae", init_params(jax.random.key(0), cfg), cfg, meta)
    base = ["eval", str(sae), "--corpus", "python-docs", "--tokens", "128", "--context", "32", "--batch", "2"]
    results = {}
    for name, extra in (("metadata", []), ("none", ["--model-processing", "none"])):
        out = tmp_path / f"{name}.json"
        assert main([*base, "--no-progress", "--out", str(out), *extra]) == 0
        results[name] = json.loads(out.read_text())
    capsys.readouterr()
    done, plain = results["metadata"], results["none"]
    assert (done["meta"]["model_processing"], plain["meta"]["model_processing"]) == ("transformer_lens", "none")
    for key in ("ce_loss_clean", "ce_loss_zero_ablation"):  # LayerNorm removes the mean that centring removed
        assert done[key] == pytest.approx(plain[key], rel=1e-5), key
    assert abs(done["explained_variance"] - plain["explained_variance"]) > 1e-3  # the SAE saw other inputs
