"""The transcoders a graph is traced through, as the trace reads them: a replacement model
(`saelab.evals.replacement.Replacement`: a per-layer transcoder set or a cross-layer transcoder) reading
`blocks.L.ln2.hook_normalized` and writing `blocks.L.hook_mlp_out` of every block, and the linear pieces of
it the attribution needs: each feature's encoder direction (what its pre-activation reads), its decoder
vectors into each layer it writes, and the skip matrices (the only path by which a transcoder passes a
gradient from its input to its output in circuit-tracer's local replacement model).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.evals.replacement import Replacement, clt_replacement, transcoder_set_replacement
from saelab.sae.clt import CLTConfig, CLTParams
from saelab.sae.config import SAEConfig
from saelab.sae.formats.circuit_tracer import INPUT_HOOK, OUTPUT_HOOK
from saelab.sae.params import SAEParams


class TraceTranscoders(NamedTuple):
    """A replacement model of every MLP, with where it came from."""

    replacement: Replacement
    model_name: str | None  # the model it was trained on, as its files name it
    scan: str  # its identifier in the graph's metadata (circuit-tracer's `scan`)

    @property
    def n_layers(self) -> int:
        return len(self.replacement.hooks_in)

    @property
    def is_clt(self) -> bool:
        return isinstance(self.replacement.params, CLTParams)


class DecoderPairs(NamedTuple):
    """Every (active feature, layer it writes) pair: circuit-tracer's `decoder_locations`. The vectors are
    held as rows of a decoder table times the activations (a per-layer set's table is its stacked W_dec, so
    a long prompt's pairs cost no (pairs, d_model) array until `vectors` is asked for)."""

    feature: np.ndarray  # (P,) int: index of the feature among the active ones
    layer: np.ndarray  # (P,) int: the layer whose MLP output the vector is added to
    position: np.ndarray  # (P,) int: the feature's position
    row: np.ndarray  # (P,) int: the pair's decoder vector's row in `table`
    scale: np.ndarray  # (P,) float32: the feature's activation
    table: np.ndarray  # (T, d_model) float32: decoder vectors

    @property
    def vectors(self) -> np.ndarray:
        """(P, d_model) float32: each pair's decoder vector times the feature's activation."""
        return self.table[self.row] * self.scale[:, None]


def hooks(n_layers: int) -> list[tuple[str, str]]:
    """The (input, output) hooks of a replacement model of every MLP of an n-layer model."""
    return [(f"blocks.{l}.{INPUT_HOOK}", f"blocks.{l}.{OUTPUT_HOOK}") for l in range(n_layers)]


def from_layers(
    layers: list[tuple[SAEParams, SAEConfig]], model_name: str | None = None, scan: str = ""
) -> TraceTranscoders:
    """Per-layer transcoders ((params, config), layer order) of every MLP."""
    rep = transcoder_set_replacement(hooks(len(layers)), layers)
    return TraceTranscoders(rep, model_name, scan or "saelab/transcoder_set")


def from_clt(params: CLTParams, cfg: CLTConfig, model_name: str | None = None, scan: str = "") -> TraceTranscoders:
    """A cross-layer transcoder over every MLP."""
    return TraceTranscoders(clt_replacement(params, cfg, hooks(cfg.n_layers)), model_name, scan or "saelab/clt")


def load(path: str | Path) -> TraceTranscoders:
    """The transcoders of a multi-SAE run (`[each_layer]`'s one per layer) or a circuit-tracer folder (a
    transcoder set or a CLT), checked to replace every block's MLP in order."""
    from saelab.evals.replacement_run import load_transcoder_set

    ts = load_transcoder_set(path)
    want = hooks(len(ts.replacement.hooks_in))
    got = list(zip(ts.replacement.hooks_in, ts.replacement.hooks_out, strict=True))
    if got != want:
        raise ValueError(
            f"{path}: a graph is traced through transcoders of every MLP in order, each reading "
            f"blocks.L.{INPUT_HOOK} and writing blocks.L.{OUTPUT_HOOK}; these read/write {got[:3]}..."
        )
    return TraceTranscoders(ts.replacement, ts.model_name, f"saelab/{Path(path).name}")


def encode_all(tc: TraceTranscoders, mlp_in: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Codes (L, pos, d_sae) and reconstructions (L, pos, d_model), skip and b_dec included, of every layer
    from the MLP inputs (L, pos, d_model) of a clean run."""
    rep, carry, codes, recon = tc.replacement, tc.replacement.carry, [], []
    for l in range(tc.n_layers):
        y, c, carry = rep.step(rep.params, l, carry, mlp_in[l].astype(jnp.float32))
        codes.append(c)
        recon.append(y)
    widths = {c.shape[-1] for c in codes}
    if len(widths) > 1:
        raise ValueError(f"the trace needs transcoders of one width; these have d_sae {sorted(widths)}")
    return jnp.stack(codes), jnp.stack(recon)


def encoder_table(tc: TraceTranscoders) -> np.ndarray:
    """(L, d_model, d_sae) float32: every layer's encoder (what each feature's pre-activation reads)."""
    p = tc.replacement.params
    if tc.is_clt:
        return np.asarray(p.W_enc, np.float32)
    return np.stack([np.asarray(q.W_enc, np.float32) for q in p])


def encoder_vectors(tc: TraceTranscoders, layer: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """(n, d_model): the encoder direction each (layer, feature) reads."""
    return encoder_table(tc)[layer, :, feature]


def decoder_pairs(tc: TraceTranscoders, active: np.ndarray, activations: np.ndarray) -> DecoderPairs:
    """Every active feature's decoder vectors (scaled by its activation) into each layer it writes, grouped
    by source layer: one pair a feature for a transcoder set (rows of its stacked W_dec), L - l pairs for a
    CLT feature of layer l (the table holds those pairs' vectors)."""
    p, acts = tc.replacement.params, np.asarray(activations, np.float32)
    if tc.is_clt:
        return _clt_pairs(p, tc.n_layers, active, acts)
    w_dec = [np.asarray(q.W_dec, np.float32) for q in p]
    offset = np.cumsum([0] + [w.shape[0] for w in w_dec[:-1]])  # each layer's first row in the stack
    feat = np.arange(len(active))  # lexicographic, so already grouped by layer
    row = offset[active[:, 0]] + active[:, 2]
    return DecoderPairs(feat, active[:, 0], active[:, 1], row, acts, np.concatenate(w_dec))


def _clt_pairs(p: CLTParams, n_layers: int, active: np.ndarray, acts: np.ndarray) -> DecoderPairs:
    parts, d = [], int(p.W_enc.shape[1])
    for l in range(n_layers):
        idx = np.flatnonzero(active[:, 0] == l)
        if idx.size:
            n_out = n_layers - l
            vecs = np.asarray(p.W_dec[l], np.float32)[active[idx, 2]].reshape(-1, d)  # (n * (L - l), d)
            feat = np.repeat(idx, n_out)
            parts.append((feat, np.tile(np.arange(l, n_layers), idx.size), active[feat, 1], acts[feat], vecs))
    if not parts:
        z = np.zeros(0, np.int64)
        return DecoderPairs(z, z, z, z, np.zeros(0, np.float32), np.zeros((0, d), np.float32))
    feat, layer, pos, scale, table = (np.concatenate(x) for x in zip(*parts, strict=True))
    return DecoderPairs(feat, layer, pos, np.arange(len(feat)), scale, table)


def skip_matrices(tc: TraceTranscoders) -> jax.Array | None:
    """(L, d_model, d_model) `x @ W_skip[l]` of each layer (zeros where a layer has none), or None."""
    if tc.is_clt:
        return None
    skips = [q.W_skip for q in tc.replacement.params]
    if all(s is None for s in skips):
        return None
    d = _d_model(tc)
    return jnp.stack([jnp.zeros((d, d), jnp.float32) if s is None else s.astype(jnp.float32) for s in skips])


def _d_model(tc: TraceTranscoders) -> int:
    p = tc.replacement.params
    return int(p.W_enc.shape[1]) if tc.is_clt else int(p[0].W_enc.shape[0])
