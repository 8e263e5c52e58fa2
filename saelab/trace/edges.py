"""Rows of the adjacency matrix from batched vector-Jacobian products through the frozen model.

A target node's row (circuit-tracer's `AttributionContext.compute_batch`): put its input direction (a
feature's encoder vector at its layer's MLP input, a logit's demeaned unembedding vector at the final norm's
output) as the cotangent at its (layer, position), carry it back down the frozen blocks (the transpose of
`saelab.trace.linearize.layer_forward`, by `jax.vjp`), and at each layer read the cotangent of the stream
against every vector the layer's sources add there: a feature's decoder vector times its activation, an
error, and at the bottom the token embeddings. One jitted function per shape bucket, vmapped over a batch of
rows; the loops are over layers only.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.config import ModelConfig
from saelab.models.weights import ModelWeights
from saelab.trace.linearize import Frozen, frozen_norm, layer_forward, layer_pattern
from saelab.trace.transcoders import DecoderPairs


class Sources(NamedTuple):
    """What the source nodes write, padded to bucket sizes (padding writes zeros). A decoder pair's vector
    is `table[pair_row] * pair_scale`, gathered a layer at a time (`layer_vectors`): the table is the
    transcoders' decoder, so a long prompt holds no (L, pos, K, d_model) array."""

    pair_feature: jax.Array  # (L, pos, K) int: the feature of each decoder pair written at (layer, position)
    pair_row: jax.Array  # (L, pos, K) int: its decoder vector's row in `table`
    pair_scale: jax.Array  # (L, pos, K) float32: the feature's activation (0 in empty slots)
    table: jax.Array  # (T, d_model) float32 decoder vectors
    errors: jax.Array  # (L, pos, d_model): the error nodes
    embed: jax.Array  # (pos, d_model): the token nodes

    def layer_vectors(self, layer: int) -> jax.Array:
        """(pos, K, d_model): decoder vector x activation of each pair added to `layer`'s MLP output."""
        return self.table[self.pair_row[layer]] * self.pair_scale[layer][..., None]

    @property
    def pair_vectors(self) -> jax.Array:
        """(L, pos, K, d_model): every layer's `layer_vectors`."""
        return self.table[self.pair_row] * self.pair_scale[..., None]


class Rows(NamedTuple):
    """A batch of target nodes: where their input is read and in which direction."""

    layer: jax.Array  # (R,) int: the layer whose MLP input the node reads; L for the final norm's output
    position: jax.Array  # (R,) int
    vector: jax.Array  # (R, d_model)


def bucket(n: int, least: int = 8) -> int:
    """The padded size of n: the next power of two, at least `least` (so one compile serves many prompts)."""
    return max(least, 1 << max(0, int(n - 1).bit_length()))


def pad_to(x: np.ndarray | jax.Array, n: int, axis: int, value: float = 0) -> jax.Array:
    """x padded with `value` along `axis` to length n."""
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, n - x.shape[axis])
    return jnp.pad(jnp.asarray(x), widths, constant_values=value)


def sources(pairs: DecoderPairs, errors: jax.Array, embed: jax.Array, n_pos: int, n_feat: int) -> Sources:
    """The source nodes padded: positions to n_pos, the decoder pairs grouped by the (layer, position) they
    write, K slots each (the most any has, bucketed), empty slots pointing at feature n_feat (dropped)."""
    n_layers, d = errors.shape[0], errors.shape[-1]
    order = np.lexsort((pairs.position, pairs.layer))  # stable: by layer, then position
    layer, pos = pairs.layer[order], pairs.position[order]
    group = layer * n_pos + pos
    first = np.searchsorted(group, group)  # each pair's group start in the sorted order
    slot = np.arange(len(order)) - first  # rank within its (layer, position)
    k = bucket(int(slot.max()) + 1 if len(slot) else 1, least=1)
    feature = np.full((n_layers, n_pos, k), n_feat, np.int32)
    row, scale = np.zeros((n_layers, n_pos, k), np.int32), np.zeros((n_layers, n_pos, k), np.float32)
    feature[layer, pos, slot] = pairs.feature[order]
    row[layer, pos, slot], scale[layer, pos, slot] = pairs.row[order], pairs.scale[order]
    table = pairs.table if len(pairs.table) else np.zeros((1, d), np.float32)
    arrays = (jnp.asarray(x) for x in (feature, row, scale, table))
    return Sources(*arrays, pad_to(errors, n_pos, 1), pad_to(embed, n_pos, 0))


def pad_frozen(f: Frozen, n_pos: int) -> Frozen:
    """The frozen state padded to n_pos positions: padded positions scale by zero and, held patterns, attend
    nowhere (recomputed ones: no prompt position attends to them, the causal mask)."""
    pad = lambda x, axis: None if x is None else pad_to(x, n_pos, axis)
    return Frozen(
        pattern=None if f.pattern is None else pad(pad(f.pattern, 2), 3),
        ln1=pad(f.ln1, 1),
        ln2=pad(f.ln2, 1),
        ln_final=pad(f.ln_final, 0),
        q=pad(f.q, 1),
        k=pad(f.k, 1),
    )


@functools.lru_cache(maxsize=16)
def edge_fn(cfg: ModelConfig, n_feat: int):
    """Jitted (params, frozen, skip, sources, rows) -> (R, n_feat + L * pos + pos) float32: each row's direct
    effects from the features, the errors (layer-major) and the tokens. Layers above the batch's highest
    target carry no cotangent and are skipped (`lax.cond`), so a batch of low-layer features costs little."""

    def run(params: ModelWeights, frozen: Frozen, skip, src: Sources, rows: Rows):
        n_rows, n_pos = rows.layer.shape[0], src.embed.shape[0]
        at = jax.nn.one_hot(rows.position, n_pos, dtype=jnp.float32)[:, :, None] * rows.vector[:, None]  # (R, pos, d)
        inject = lambda l: jnp.where((rows.layer == l)[:, None, None], at, 0.0)
        final = lambda r: frozen_norm(r, frozen.ln_final, params.ln_final, cfg)
        g = jax.vmap(functools.partial(_transpose, final, src.embed))(inject(cfg.n_layers))  # (R, pos, d)
        feats, errors, top = jnp.zeros((n_rows, n_feat), jnp.float32), [], rows.layer.max()
        for l in reversed(range(cfg.n_layers)):
            s = None if skip is None else skip[l]

            def step(state, l=l, s=s):  # g: the cotangent on the stream leaving layer l
                g, feats = state
                pattern = layer_pattern(frozen, l, cfg)  # recomputed here, per batch, when held as q and k
                ln1, ln2 = frozen.ln1[l], frozen.ln2[l]
                block = functools.partial(layer_forward, params.layers[l], cfg, pattern, ln1, ln2, s)
                back = jax.vmap(functools.partial(_transpose, block, src.embed))
                err = jnp.sum(g * src.errors[l], -1)  # (R, pos)
                contrib = jnp.einsum("rpd,pkd->rpk", g, src.layer_vectors(l)).reshape(n_rows, -1)  # (R, pos * K)
                feats = feats.at[:, src.pair_feature[l].reshape(-1)].add(contrib, mode="drop")
                return (back(inject(l), g), feats), err

            skipped = lambda state: (state, jnp.zeros((n_rows, n_pos), jnp.float32))
            (g, feats), err = jax.lax.cond(l <= top, step, skipped, (g, feats))
            errors.append(err)
        tokens = jnp.sum(g * src.embed, -1)  # (R, pos)
        return jnp.concatenate([feats, jnp.stack(errors[::-1], 1).reshape(n_rows, -1), tokens], axis=1)

    return jax.jit(run)


def _transpose(f, example: jax.Array, *cotangents: jax.Array) -> jax.Array:
    """The transpose of the linear map f (one input, shaped like `example`) applied to its output's
    cotangents."""
    return jax.vjp(f, example)[1](cotangents[0] if len(cotangents) == 1 else cotangents)[0]
