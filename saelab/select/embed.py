"""Sample embeddings from one model forward: mean over tokens of SAE codes, hidden states or MLP neurons.

MoNA (docs/selection.md, "The method") embeds a sample as the mean of its token codes; the mean (not the
sum) keeps long samples from winning on length, and it makes the embedding of a text equal to that of the same
token codes repeated. Samples are tokenised on their own (BOS + text, truncated to `max_tokens`), sorted by
length (then tokens) inside a chunk so a batch carries little padding and does not depend on record order,
padded to a multiple of 16 tokens (few compiled shapes), and run only up to the hooked block. BOS is left out
of the mean: its residual norm is huge and the same for every sample (saelab.train excludes it from SAE
training by default too). Nothing is written to disk here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from saelab.models import HookContext, Model, forward, hook_layer, validate_hook_names
from saelab.models.hooks import stop_layer
from saelab.sae import LoadedSAE, encode
from saelab.select.config import Pooling, Template
from saelab.select.template import Wrapped, wrap_ids

Kind = Literal["sae", "hidden", "neurons"]
SEQ_BUCKET = 16

__all__ = ["Kind", "mean_pool", "pool_tokens", "pad_batch", "ModelEmbedder", "neuron_hook"]


def mean_pool(x: jax.Array, mask: jax.Array) -> jax.Array:
    """(batch, d) mean over the positions where mask is 1 (or True) of x (batch, seq, d); 0 for a row with no
    token."""
    w = mask.astype(x.dtype)  # (batch, seq)
    n = w.sum(1, keepdims=True)  # (batch, 1)
    return jnp.einsum("bs,bsd->bd", w, x) / jnp.maximum(n, 1.0)


def pool_tokens(x: jax.Array, mask: jax.Array, pooling: Pooling = "mean", skip: int = 1) -> jax.Array:
    """(batch, d) pooled over the positions where mask is 1 of x (batch, seq, d): their mean (MoNA), their max,
    or (mean-skip) the mean without the first `skip` of them, all of them for a row that has no more; 0 for
    a row with no position."""
    on = mask > 0  # (batch, seq)
    if pooling == "mean-skip":
        late = on & (jnp.cumsum(on, axis=1) > skip)
        on = jnp.where(late.any(1, keepdims=True), late, on)
    if pooling == "max":
        top = jnp.where(on[..., None], x, -jnp.inf).max(1)  # (batch, d)
        return jnp.where(on.any(1)[:, None], top, 0.0)
    return mean_pool(x, on)


def neuron_hook(hook: str) -> str:
    """The MLP-neuron hook (`blocks.L.mlp.hook_post`) of the block that `hook` belongs to."""
    return f"blocks.{hook_layer(hook)}.mlp.hook_post"


class ModelEmbedder:
    """Texts -> per-sample embeddings of one kind at one hook, batched through the model's forward."""

    def __init__(
        self,
        model: Model,
        hook: str,
        kind: Kind,
        sae: LoadedSAE | None = None,
        batch_size: int = 32,
        max_tokens: int = 256,
        pooling: Pooling = "mean",
        skip_tokens: int = 1,
        template: Template = "none",
    ) -> None:
        if model.tokenizer is None or model.bos_id is None:
            raise ValueError(f"model {model.source} needs a tokenizer with a BOS id to embed text")
        validate_hook_names([hook], model.cfg.n_layers)
        if kind == "sae":
            if sae is None:
                raise ValueError("kind 'sae' needs an SAE")
            if sae.cfg.d_in != _width(model, hook):
                raise ValueError(f"SAE d_in {sae.cfg.d_in} != width {_width(model, hook)} of {hook}")
        self.model, self.hook, self.kind, self.sae = model, hook, kind, sae
        self.batch_size, self.max_tokens, self.template = batch_size, max_tokens, template
        self.pooling, self.skip_tokens = pooling, skip_tokens
        wrap_ids(model.tokenizer, [[]], model.bos_id, template, max_tokens)  # fail now on a missing template token
        read = neuron_hook(hook) if kind == "neurons" else hook
        self.width = sae.cfg.d_sae if kind == "sae" else _width(model, read)
        self._fn = _embed_fn(model.cfg, read, kind, sae.cfg if sae else None, pooling, skip_tokens)

    def wrap(self, texts: Sequence[str]) -> list[Wrapped]:
        """Each text's tokens in the input format, with the mask of its own tokens (the pooled positions)."""
        content = [e.ids for e in self.model.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        return wrap_ids(self.model.tokenizer, content, self.model.bos_id, self.template, self.max_tokens)

    def __call__(self, texts: Sequence[str]) -> sp.csr_matrix | np.ndarray:
        """(len(texts), width) embeddings in input order: CSR for SAE codes, dense float32 otherwise."""
        wrapped = self.wrap(texts)
        # by length, then by the tokens: a chunk's batches do not depend on the order of its records, so
        # neither do their floats (XLA's results can differ in the last bits with a row's place in a batch)
        order = np.array(sorted(range(len(wrapped)), key=lambda i: (len(wrapped[i].ids), wrapped[i].ids)), np.int64)
        out = np.zeros((len(wrapped), self.width), np.float32)
        sae_params = self.sae.params if self.sae else None
        for start in range(0, len(wrapped), self.batch_size):
            rows = order[start : start + self.batch_size]
            toks, mask, content = pad_batch([wrapped[i] for i in rows], self.batch_size)
            emb = self._fn(self.model.params, sae_params, jnp.asarray(toks), jnp.asarray(mask), jnp.asarray(content))
            out[rows] = np.asarray(emb)[: len(rows)]
        return sp.csr_matrix(out) if self.kind == "sae" else out


def _width(model: Model, hook: str) -> int:
    return model.cfg.d_mlp if hook.endswith("mlp.hook_post") else model.cfg.d_model


def pad_batch(rows: list[Wrapped], batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded to a multiple of SEQ_BUCKET and to `batch` rows: tokens, attention mask and content mask,
    each (batch, seq)."""
    n = max(len(w.ids) for w in rows)
    seq = -(-n // SEQ_BUCKET) * SEQ_BUCKET
    batch = min(batch, 1 << max(len(rows) - 1, 7).bit_length())  # a few target texts: 8..batch rows, not batch
    toks = np.zeros((batch, seq), np.int32)
    mask = np.zeros((batch, seq), np.int32)
    content = np.zeros((batch, seq), np.int32)
    for r, w in enumerate(rows):
        toks[r, : len(w.ids)] = w.ids
        mask[r, : len(w.ids)] = 1
        content[r, : len(w.ids)] = w.content
    return toks, mask, content


@functools.lru_cache(maxsize=16)  # compiled programs keyed by configs; the weights are arguments
def _embed_fn(cfg, read: str, kind: Kind, sae_cfg, pooling: Pooling, skip: int) -> Callable:
    """Jitted (params, sae_params, tokens, mask, content) -> (batch, width) embeddings pooled over the content
    positions (BOS and template tokens excluded)."""
    stop = stop_layer([read], cfg.n_layers)

    @jax.jit
    def run(params, sae_params, tokens, mask, content):
        _, cache = forward(params, cfg, tokens, mask, HookContext(cache=(read,)), stop)
        x = cache[read].astype(jnp.float32)  # (batch, seq, width)
        if kind == "sae":
            b, s, d = x.shape
            x = encode(sae_params, x.reshape(b * s, d), sae_cfg).reshape(b, s, -1)  # (batch, seq, d_sae)
        return pool_tokens(x, content, pooling, skip)

    return run
