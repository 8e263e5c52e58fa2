"""Heads that act by setting other heads' attention, read off an attribution graph (issue 34, items 5 and 6).

A graph freezes every attention pattern, so a head that matters by moving another head's attention (IOI's
S-inhibition and duplicate-token heads steer the name movers' queries) carries little of its flow. This
module adds that QK side to the OV flow of `heads.head_flow`, to first order around the clean run:

- the flow F[l, h, q, s] through head h of layer l from key s to query q is proportional to the frozen
  A_l[h, q, s], so a change d of the pre-softmax score at (q, s) changes the flow at q by G[l, h, q, s] d
  with G = F[l, h, q, s] - A_l[h, q, s] sum_s' F[l, h, q, s'] (the softmax's Jacobian);
- a change o of an earlier head's output (its whole output, or the change patching it to another prompt's
  makes), carried up through the frozen model (linear), moves that score by scale (dQ_q . K_s + Q_q . dK_s),
  Q and K the clean run's rotated queries and keys, dQ and dK what the carried change adds to them;
- taking o out therefore changes the graph's flow by -sum G dscore. One gradient of J = sum G * scores with
  respect to additions at every attention output gives it for all heads at once.

`qk_head_effects` is that change's size per head, in the flow's own units (edge pruning scores), so
`head_flow(...).sum((2, 3)) + qk_head_effects(...)` ranks heads by the flow they carry and the flow they
steer. Pre-norm blocks without q/k norms or soft-capping, as `saelab.trace.qk` (whose `_check` refuses the rest).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.models.layers import apply_rope, norm, rope_inv_freq
from saelab.models.model import Model
from saelab.trace.heads import frozen_stream
from saelab.trace.linearize import frozen_norm


def score_sensitivity(flow: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """G (L, heads, q, s): the first-order change of the flow through each head at each query per unit of
    pre-softmax score at (q, s), from the flow F (L, heads, q, s) and the frozen pattern A (same shape)."""
    return flow - pattern * flow.sum(-1, keepdims=True)


def head_outputs(model: Model, tokens) -> jax.Array:
    """(L, pos, heads, d_model) float32: what each head writes at each position in the clean run (its z
    through its rows of W_O; the output bias, no head's, left out)."""
    names = [f"blocks.{l}.attn.hook_z" for l in range(model.cfg.n_layers)]
    ids = np.asarray(tokens, np.int32)[None]
    _, cache = model.run_with_cache(ids, names, pad_mask=np.ones_like(ids))
    z = jnp.stack([cache[n][0] for n in names]).astype(jnp.float32)  # (L, pos, heads, d_head)
    w_o = jnp.stack([p.attn.W_O for p in model.params.layers]).astype(jnp.float32)  # (L, heads, d_head, d)
    return jnp.einsum("lphd,lhdm->lphm", z, w_o)


def qk_head_effects(state, flow: np.ndarray, outputs: jax.Array) -> np.ndarray:
    """(L, heads): |first-order change of the graph's flow| when `outputs` (L, pos, heads, d_model; a head's
    output from `head_outputs`, or the difference patching makes) is taken out of every later head's
    queries and keys. `state` is `saelab.trace.qk.prepare`'s, `flow` `heads.head_flow`'s."""
    g = score_sensitivity(flow, np.asarray(state.frozen.pattern))
    arrays = state._replace(active=None, activations=None, cfg=None, n_features=None)
    grad = _score_gradient(arrays, jnp.asarray(g, jnp.float32), cfg=state.cfg)  # (L, pos, d)
    return np.abs(np.asarray(jnp.einsum("lpm,lphm->lh", grad, outputs)))


def scores(state, taps, *, cfg: ModelConfig) -> jax.Array:
    """(L, heads, q, k) pre-softmax scores of the frozen model with additions `taps` (a list of L (pos, d))
    at the attention outputs, carried up to each layer's queries and keys; at zero taps the clean run's."""
    params, f = state.params, state.frozen
    n_pos, d = state.embed.shape
    zeros = jnp.zeros((len(params.layers), n_pos, d), jnp.float32)
    carried = frozen_stream(params, cfg, f, state.skip, zeros[0], zeros, taps)[0]  # (L, pos, d)
    inv, at = rope_inv_freq(cfg), jnp.arange(n_pos)[None]
    rot = (lambda y: apply_rope(y[None], at, inv)[0]) if cfg.positions == "rope" else (lambda y: y)
    rep, scale = cfg.n_heads // cfg.n_kv_heads, (cfg.query_pre_attn_scalar or cfg.d_head) ** -0.5
    out = []
    for l, p in enumerate(params.layers):
        clean, moved = norm(state.resid_pre[l], p.ln1, cfg), frozen_norm(carried[l], f.ln1[l], p.ln1, cfg)
        q = rot(_project(clean, p.attn.W_Q, p.attn.b_Q) + _project(moved, p.attn.W_Q, None))
        k = rot(_project(clean, p.attn.W_K, p.attn.b_K) + _project(moved, p.attn.W_K, None))
        out.append(scale * jnp.einsum("qhd,khd->hqk", q, jnp.repeat(k, rep, axis=1)))
    return jnp.stack(out)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _score_gradient(state, g, *, cfg: ModelConfig):
    """(L, pos, d): d(sum g * scores) / d(addition at each attention output), at the clean run."""
    n_pos, d = state.embed.shape
    # taps as a list of layers: the transpose of indexing one array would pad every layer's cotangent
    zeros = [jnp.zeros((n_pos, d), jnp.float32) for _ in state.params.layers]
    grad = jax.grad(lambda taps: jnp.sum(g * scores(state, taps, cfg=cfg)))(zeros)
    return jnp.stack(grad)


def _project(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    """(pos, d) @ (d, heads, d_head) (+ (heads, d_head)) -> (pos, heads, d_head), in float32."""
    y = jnp.einsum("pm,mhd->phd", x, w.astype(jnp.float32))
    return y if b is None else y + b.astype(jnp.float32)
