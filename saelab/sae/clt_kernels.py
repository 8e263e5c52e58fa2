"""The TopK CLT's encoder and decoder, sparse (the step's default) or dense (the tests' twin).

Sparse: each layer's encoder is saelab.sae.sparse's `topk_encode_aux` (its backward scatters into the k chosen
columns of W_enc[l] only), and each source layer's decoders to all its target layers are one
`sparse_decode` over W_dec[l] viewed as (d_sae, (L - l) * d_out) rows: the forward gathers k rows per token,
the backward scatters k rows, so a step costs O(k) decoder rows per layer pair, not O(d_sae) (the
custom-VJP kernels and gather/scatter primitives of saelab.sae.sparse and saelab.sae.gather). Dense: the same
codes through (batch, d_sae) matrices and plain autodiff.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp

from saelab.sae.affine import matmul
from saelab.sae.auxk import aux_topk
from saelab.sae.codes import TopK, densify, latent_counts, top_k
from saelab.sae.sparse import dense_decode, sparse_decode, topk_encode_aux

if TYPE_CHECKING:
    from saelab.sae.clt import CLTConfig, CLTParams

__all__ = ["CLTCodes", "clt_topk_codes", "clt_decode_codes", "layer_rows"]


class CLTCodes(NamedTuple):
    """k live latents per layer per token."""

    vals: jax.Array  # (batch, L, k) float32, ReLU applied
    idx: jax.Array  # (batch, L, k) int32 latent indices within the layer

    def layer(self, l: int) -> TopK:
        """The codes of source layer l, (batch, k) each."""
        return TopK(self.vals[:, l], self.idx[:, l])

    def densify(self, d_sae: int) -> jax.Array:
        """(batch, L, d_sae) dense codes."""
        L = self.vals.shape[1]
        return jnp.stack([densify(*self.layer(l), d_sae) for l in range(L)], axis=1)

    def latent_counts(self, d_sae: int) -> jax.Array:
        """(L * d_sae,) tokens on which each latent fired, layer-major."""
        return jnp.concatenate([latent_counts(self.layer(l), d_sae) for l in range(self.vals.shape[1])])


def layer_rows(params: CLTParams, l: int) -> jax.Array:
    """W_dec[l] as one row per latent over all its target layers, (d_sae, (L - l) * d_out)."""
    return params.W_dec[l].reshape(params.W_dec[l].shape[0], -1)


def clt_topk_codes(
    params: CLTParams, x: jax.Array, cfg: CLTConfig, dead: jax.Array | None
) -> tuple[CLTCodes, CLTCodes]:
    """(top-k codes, AuxK codes over the dead latents) of every layer, from one encoder GEMM per layer;
    x (batch, L, d_in), dead (L, d_sae) or None (no AuxK codes: (batch, L, 0))."""
    k_aux = cfg.resolved_k_aux if dead is not None else 0
    codes, aux = [], []
    for l in range(cfg.n_layers):
        mask = None if dead is None else dead[l]
        if cfg.kernels == "sparse":
            c, a = topk_encode_aux(
                x[:, l], params.W_enc[l], params.b_enc[l], cfg.k, mask, k_aux, compute_dtype=cfg.compute_dtype
            )
        else:
            pre = matmul(x[:, l], params.W_enc[l], cfg.compute_dtype) + params.b_enc[l]  # (batch, d_sae)
            top, idx = top_k(pre, cfg.k)
            c = TopK(jax.nn.relu(top), idx)
            a = aux_topk(pre, mask, k_aux) if k_aux else TopK(top[:, :0], idx[:, :0])
        codes.append(c)
        aux.append(a)
    stack = lambda ts: CLTCodes(jnp.stack([t.vals for t in ts], 1), jnp.stack([t.idx for t in ts], 1))
    return stack(codes), stack(aux)


def clt_decode_codes(params: CLTParams, codes: CLTCodes, cfg: CLTConfig) -> jax.Array:
    """y_hat (batch, L, d_out) from (batch, L, k) codes: source layer l's k rows of W_dec[l] write targets
    l..L-1 in one gather (sparse) or one GEMM over densified codes (dense)."""
    batch, L, d_out = codes.vals.shape[0], cfg.n_layers, cfg.resolved_d_out
    out = jnp.zeros((batch, L, d_out), jnp.float32)
    for l in range(L):
        rows, zero_bias = layer_rows(params, l), jnp.zeros(((L - l) * d_out,), jnp.float32)
        decode = sparse_decode if cfg.kernels == "sparse" else dense_decode
        part = decode(*codes.layer(l), rows, zero_bias, compute_dtype=cfg.compute_dtype)  # (batch, (L-l)*d_out)
        out = out.at[:, l:].add(part.reshape(batch, L - l, d_out))
    return out + params.b_dec
