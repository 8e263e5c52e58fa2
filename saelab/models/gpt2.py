"""GPT-2 (the circuits paper's model): learned positions, LayerNorm, fused QKV, GELU (tanh) MLP, biases.

Block: x += proj(attn(qkv(ln_1(x)))); x += fc2(gelu(fc1(ln_2(x)))).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig, mha_shape
from saelab.models.weights import AttentionWeights, Family, Getter, LayerWeights, MLPWeights, ModelWeights, Reader


def config_from_hf(hf: dict[str, Any], name: str = "") -> ModelConfig:
    d = hf["n_embd"]
    return ModelConfig(
        family="gpt2",
        **mha_shape(hf["n_layer"], d, hf["n_head"], hf.get("n_inner") or 4 * d, hf["vocab_size"]),
        max_positions=hf["n_positions"],
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        norm="layer",
        positions="learned",
        attention_bias=True,
        attn_out_bias=True,
        mlp_gated=False,
        activation="gelu_tanh",
        name=name,
    )


def weights_from_hf(get: Getter, cfg: ModelConfig, dtype: jnp.dtype) -> ModelWeights:
    """Hugging Face GPT2LMHeadModel tensor names (Conv1D weights are [in, out]) -> saelab weights."""
    d, h, dh = cfg.d_model, cfg.n_heads, cfg.d_head

    def g(name: str) -> np.ndarray:
        try:
            return get("transformer." + name)
        except KeyError:
            return get(name)  # checkpoints saved from GPT2Model have no "transformer." prefix

    r = Reader(g, dtype)

    def layer(p: str) -> LayerWeights:
        wq, wk, wv = np.split(g(p + "attn.c_attn.weight"), 3, axis=1)  # (d, 3d) -> 3 x (d, d)
        bq, bk, bv = np.split(g(p + "attn.c_attn.bias"), 3)
        w = [r.array(x, d, h, dh) for x in (wq, wk, wv)]
        b = [r.array(x, h, dh) for x in (bq, bk, bv)]
        attn = AttentionWeights(*w, r(p + "attn.c_proj.weight", h, dh, d), *b, b_O=r(p + "attn.c_proj.bias"))
        mlp = MLPWeights(
            r(p + "mlp.c_fc.weight"), r(p + "mlp.c_proj.weight"), None, r(p + "mlp.c_fc.bias"), r(p + "mlp.c_proj.bias")
        )
        return LayerWeights(attn, mlp, ln1=r.norm(p + "ln_1", bias=True), ln2=r.norm(p + "ln_2", bias=True))

    layers = tuple(layer(f"h.{i}.") for i in range(cfg.n_layers))
    return ModelWeights(r("wte.weight"), layers, r.norm("ln_f", bias=True), pos_embed=r("wpe.weight"))


FAMILY = Family("gpt2", ("gpt2",), config_from_hf, weights_from_hf)
