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
    """Every (active feature, layer it writes) pair: circuit-tracer's `decoder_locations`."""

    feature: np.ndarray  # (P,) int: index of the feature among the active ones
    layer: np.ndarray  # (P,) int: the layer whose MLP output the vector is added to
    position: np.ndarray  # (P,) int: the feature's position
    vectors: np.ndarray  # (P, d_model) float32: the decoder vector times the feature's activation


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


def encoder_vectors(tc: TraceTranscoders, layer: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """(n, d_model): the encoder direction each (layer, feature) reads."""
    p = tc.replacement.params
    if tc.is_clt:
        return np.asarray(p.W_enc)[layer, :, feature]
    w_enc = np.stack([np.asarray(q.W_enc) for q in p])  # (L, d_model, d_sae)
    return w_enc[layer, :, feature]


def decoder_pairs(tc: TraceTranscoders, active: np.ndarray, activations: np.ndarray) -> DecoderPairs:
    """Every active feature's decoder vectors (scaled by its activation) into each layer it writes, grouped
    by source layer: one pair a feature for a transcoder set, L - l pairs for a CLT feature of layer l."""
    p, parts = tc.replacement.params, []
    for l in range(tc.n_layers):
        idx = np.flatnonzero(active[:, 0] == l)
        if not idx.size:
            continue
        if tc.is_clt:
            dec = np.asarray(p.W_dec[l])[active[idx, 2]]  # (n, L - l, d)
        else:
            dec = np.asarray(p[l].W_dec)[active[idx, 2]][:, None]  # (n, 1, d)
        n_out = dec.shape[1]
        dec = dec * activations[idx, None, None]
        feat = np.repeat(idx, n_out)
        parts.append(
            (feat, np.tile(np.arange(l, l + n_out), idx.size), active[feat, 1], dec.reshape(-1, dec.shape[-1]))
        )
    if not parts:
        return DecoderPairs(*(np.zeros(0, np.int64),) * 3, np.zeros((0, _d_model(tc)), np.float32))
    return DecoderPairs(*(np.concatenate(x) for x in zip(*parts, strict=True)))


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
