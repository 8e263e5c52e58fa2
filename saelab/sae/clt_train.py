"""What training a cross-layer transcoder needs beyond its loss: the unit-norm decoder constraint over the tuple
`W_dec`, and folding per-layer input and output scales back into the parameters for export.

A latent of source layer l writes to every layer t >= l; its decoder row is W_dec[l][i] viewed as one
((L - l) * d_out,) vector (the layout of saelab.sae.clt), as clt.init_params draws it. The unit-norm
constraint keeps that whole row at unit norm (OpenAI's constraint, Gao et al. 2024 sec. A.1, applied to the
concatenation of a feature's decoders, whose norm is what the CLT paper's sparsity penalty weighs: Ameisen et al.
2025, "Circuit Tracing", methods), so a latent may spread its norm over the layers it writes to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from saelab.sae.clt import CLTParams
from saelab.sae.decoder_norm import normalise_decoder, remove_parallel_grad
from saelab.sae.params import check_finite

__all__ = [
    "check_clt_finite",
    "clt_unit_norm_decoder",
    "decoder_row_norms",
    "fold_clt_scaling",
    "normalise_clt_decoder",
]


def _rows(w: jax.Array) -> jax.Array:
    """W_dec[l] (d_sae, L - l, d_out) as one row per latent, (d_sae, (L - l) * d_out)."""
    return w.reshape(w.shape[0], -1)


def normalise_clt_decoder(W_dec: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    """Every latent's decoder row (over all the layers it writes to) scaled to unit norm."""
    return tuple(normalise_decoder(_rows(w)).reshape(w.shape) for w in W_dec)


def decoder_row_norms(W_dec: tuple[jax.Array, ...]) -> jax.Array:
    """(L, d_sae) the norm of every latent's decoder row over all its target layers."""
    return jnp.stack([jnp.linalg.norm(_rows(w), axis=1) for w in W_dec])


def clt_unit_norm_decoder(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` inside the unit-norm decoder constraint of a CLT: the gradient of each decoder row loses its
    component along the row before `tx`, and the update is turned into one that lands on unit rows after it
    (saelab.sae.decoder_norm's transforms, over each W_dec[l]'s rows)."""

    def remove_parallel(updates: CLTParams, state, params: CLTParams | None = None):
        if params is None:
            raise ValueError("clt_unit_norm_decoder needs params: call tx.update(grads, state, params)")
        g = tuple(
            remove_parallel_grad(_rows(w), _rows(u)).reshape(w.shape)
            for w, u in zip(params.W_dec, updates.W_dec, strict=True)
        )
        return updates._replace(W_dec=g), state

    def renormalise(updates: CLTParams, state, params: CLTParams | None = None):
        if params is None:
            raise ValueError("clt_unit_norm_decoder needs params: call tx.update(grads, state, params)")
        new = normalise_clt_decoder(tuple(w + u for w, u in zip(params.W_dec, updates.W_dec, strict=True)))
        return updates._replace(W_dec=tuple(n - w for n, w in zip(new, params.W_dec, strict=True))), state

    empty = lambda params: optax.EmptyState()
    return optax.chain(
        optax.GradientTransformation(empty, remove_parallel), tx, optax.GradientTransformation(empty, renormalise)
    )


def fold_clt_scaling(params: CLTParams, in_scales: Sequence[float], out_scales: Sequence[float]) -> CLTParams:
    """Parameters for raw activations of a CLT trained on inputs x_l * s_l and targets y_t * o_t (each layer's
    hooks scaled by their own statistics): T'(x) = T(x * s) / o, layer by layer.

    Codes come out in raw-input units (saelab.sae.scaling's "codes" mode): b_enc[l] and threshold[l] are divided
    by s_l (TopK and JumpReLU commute with a positive scale of the pre-activations), so the decoder from l to t
    takes them back by s_l / o_t, and b_dec[t] is divided by o_t."""
    L = params.n_layers
    if len(in_scales) != L or len(out_scales) != L:
        raise ValueError(
            f"a CLT of {L} layers needs {L} input and output scales, got {len(in_scales)}, {len(out_scales)}"
        )
    s = jnp.asarray(in_scales, jnp.float32)  # (L,)
    o = jnp.asarray(out_scales, jnp.float32)  # (L,)
    W_dec = tuple(w * (s[l] / o[l:])[None, :, None] for l, w in enumerate(params.W_dec))  # (d_sae, L - l, d_out)
    thr = None if params.threshold is None else params.threshold / s[:, None]
    return params._replace(b_enc=params.b_enc / s[:, None], W_dec=W_dec, b_dec=params.b_dec / o[:, None], threshold=thr)


class _Decoder(NamedTuple):
    W_dec: Any  # (d_sae, L - l, d_out) one source layer's decoders


def check_clt_finite(params: CLTParams, source: str) -> None:
    """saelab.sae.check_finite over a CLT: the per-layer arrays, then each source layer's decoders."""
    check_finite(params._replace(W_dec=None), source)
    for l, w in enumerate(params.W_dec):
        check_finite(_Decoder(w), f"{source} (source layer {l})")
