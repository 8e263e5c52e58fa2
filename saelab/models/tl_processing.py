"""TransformerLens-style weight processing (`HookedTransformer.from_pretrained`'s defaults), for GPT-2.

SAEs trained through TransformerLens (SAELens's gpt2-small-res-jb, for example) saw the activations of a
processed model, so evaluating them needs the same processing. As TransformerLens defines it
(`transformer_lens/HookedTransformer.py`, `fold_layer_norm`, `center_writing_weights`, `center_unembed`,
`fold_value_biases`; see also its docs' further_comments.md), in this order:

- fold_ln: each LayerNorm's weight and bias move into the linear maps that read its output (W_Q, W_K, W_V,
  W_in, and an untied W_U with a new bias b_U), whose inputs are then centred over d_model (the normalised
  vector is orthogonal to all-ones, so that part of a reading matrix never mattered). The LayerNorms keep
  only their centring and scaling (weight 1, bias 0). No logit changes.
- center_writing_weights: every matrix and bias writing to the residual stream (W_E, W_pos, W_O, b_O, W_out,
  b_out) loses its mean over d_model, so the residual stream is mean-zero at every hook_resid_*. No logit
  changes (LayerNorm removes the mean anyway).
- center_unembed: W_U and b_U lose their mean over the vocabulary: logits shift by a per-position constant,
  log-probabilities stay.
- fold_value_biases: attention patterns sum to one, so b_V's effect is constant; it moves into b_O
  (b_O += sum_h b_V[h] @ W_O[h], b_V = 0). `attn.hook_z` changes (by -b_V), nothing downstream does.

Everything is computed in float32; the caller casts to its compute dtype afterwards.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp

from saelab.models.config import ModelConfig
from saelab.models.weights import ModelWeights, Norm

Processing = Literal["none", "transformer_lens"]
PROCESSINGS: tuple[str, ...] = ("none", "transformer_lens")


def process_weights(params: ModelWeights, cfg: ModelConfig, processing: Processing) -> ModelWeights:
    """`params` processed as `processing` names ("none" returns them as they are)."""
    if processing == "none":
        return params
    if processing == "transformer_lens":
        return process_transformer_lens(params, cfg)
    raise ValueError(f"unknown model processing {processing!r}; choose one of {PROCESSINGS}")


def process_transformer_lens(
    params: ModelWeights,
    cfg: ModelConfig,
    *,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
) -> ModelWeights:
    """GPT-2 params processed as `HookedTransformer.from_pretrained` does by default (module docstring)."""
    if cfg.family != "gpt2":
        raise ValueError(
            f"TransformerLens weight processing is implemented for GPT-2, not {cfg.family!r}; load this model "
            "with model_processing='none' (its RMSNorm has no bias or mean to fold or centre)"
        )
    p = untie_unembed(params)
    if fold_ln:
        p = fold_layer_norm(p)
    if center_writing_weights:
        p = centre_writing_weights(p)
    if center_unembed:
        p = centre_unembed(p)
    if fold_value_biases:
        p = fold_value_bias(p)
    return p


def untie_unembed(params: ModelWeights) -> ModelWeights:
    """GPT-2 ties W_U to W_E; processing changes them differently, so the unembedding and its bias b_U become
    their own parameters (`transformer.unembed` uses them when present)."""
    if params.unembed is not None and params.unembed_bias is not None:
        return params
    w_e = _f32(params.embed if params.unembed is None else params.unembed)  # (vocab, d_model)
    return params._replace(unembed=w_e, unembed_bias=jnp.zeros((w_e.shape[0],), jnp.float32))


def fold_layer_norm(params: ModelWeights) -> ModelWeights:
    """Fold ln_1, ln_2 and ln_final into the maps reading them, then centre those maps' inputs over d_model."""
    layers = []
    for lp in params.layers:
        (w1, b1), (w2, b2) = (_f32(lp.ln1.w), _f32(lp.ln1.b)), (_f32(lp.ln2.w), _f32(lp.ln2.b))
        qkv = {}
        for name in ("Q", "K", "V"):
            w = _f32(getattr(lp.attn, f"W_{name}"))  # (d_model, heads, d_head)
            qkv[f"b_{name}"] = _f32(getattr(lp.attn, f"b_{name}")) + jnp.einsum("m,mhd->hd", b1, w)
            w = w * w1[:, None, None]
            qkv[f"W_{name}"] = w - w.mean(0, keepdims=True)
        w_in = _f32(lp.mlp.W_in)  # (d_model, d_mlp)
        b_in = _f32(lp.mlp.b_in) + b2 @ w_in
        w_in = w_in * w2[:, None]
        mlp = lp.mlp._replace(W_in=w_in - w_in.mean(0, keepdims=True), b_in=b_in)
        layers.append(lp._replace(attn=lp.attn._replace(**qkv), mlp=mlp, ln1=_unit(lp.ln1), ln2=_unit(lp.ln2)))
    wf, bf = _f32(params.ln_final.w), _f32(params.ln_final.b)
    w_u = _f32(params.unembed).T  # (d_model, vocab)
    b_u = _f32(params.unembed_bias) + bf @ w_u
    w_u = w_u * wf[:, None]
    return params._replace(
        layers=tuple(layers),
        unembed=(w_u - w_u.mean(0, keepdims=True)).T,
        unembed_bias=b_u,
        ln_final=_unit(params.ln_final),
    )


def centre_writing_weights(params: ModelWeights) -> ModelWeights:
    """Subtract the mean over d_model from W_E, W_pos and every layer's W_O, b_O, W_out, b_out."""
    centre = lambda a: _f32(a) - _f32(a).mean(-1, keepdims=True)
    layers = tuple(
        lp._replace(
            attn=lp.attn._replace(W_O=centre(lp.attn.W_O), b_O=centre(lp.attn.b_O)),
            mlp=lp.mlp._replace(W_out=centre(lp.mlp.W_out), b_out=centre(lp.mlp.b_out)),
        )
        for lp in params.layers
    )
    return params._replace(embed=centre(params.embed), pos_embed=centre(params.pos_embed), layers=layers)


def centre_unembed(params: ModelWeights) -> ModelWeights:
    """Subtract the mean over the vocabulary from W_U (per d_model row) and from b_U."""
    w_u, b_u = _f32(params.unembed), _f32(params.unembed_bias)  # (vocab, d_model), (vocab,)
    return params._replace(unembed=w_u - w_u.mean(0, keepdims=True), unembed_bias=b_u - b_u.mean())


def fold_value_bias(params: ModelWeights) -> ModelWeights:
    """b_O += sum over heads of b_V[h] @ W_O[h]; b_V = 0."""
    layers = []
    for lp in params.layers:
        b_v, w_o = _f32(lp.attn.b_V), _f32(lp.attn.W_O)  # (heads, d_head), (heads, d_head, d_model)
        b_o = _f32(lp.attn.b_O) + jnp.einsum("hd,hdm->m", b_v, w_o)
        layers.append(lp._replace(attn=lp.attn._replace(b_O=b_o, b_V=jnp.zeros_like(b_v))))
    return params._replace(layers=tuple(layers))


def _unit(n: Norm) -> Norm:
    """A LayerNorm that only centres and scales: weight 1, bias 0."""
    return Norm(jnp.ones_like(_f32(n.w)), jnp.zeros_like(_f32(n.b)))


def _f32(a) -> jnp.ndarray:
    return jnp.asarray(a, jnp.float32)
