"""Mean pooling: invariant to repeating a sample's token codes, blind to padding; the batched embedder keeps
input order, gives the same row whatever the batch, and leaves BOS out."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from saelab.sae import load_sae
from saelab.select.embed import ModelEmbedder, mean_pool

HOOK = "blocks.1.hook_resid_post"


TEXTS = [
    "set a timer for five minutes",
    "play music",
    "what is the weather today please",
    "book flight to paris",
    "a",
]


def test_mean_pool_invariant_to_repetition_and_padding():
    rng = np.random.default_rng(0)
    codes = rng.random((1, 5, 8)).astype(np.float32) * (rng.random((1, 5, 8)) < 0.3)  # (batch, seq, d_sae)
    mask = np.ones((1, 5), np.int32)
    once = mean_pool(jnp.asarray(codes), jnp.asarray(mask))
    twice = mean_pool(jnp.asarray(np.concatenate([codes, codes], 1)), jnp.asarray(np.concatenate([mask, mask], 1)))
    np.testing.assert_allclose(np.asarray(twice), np.asarray(once), rtol=1e-6)
    summed_twice = np.asarray(np.concatenate([codes, codes], 1).sum(1))
    assert not np.allclose(summed_twice, np.asarray(once) * 5)  # a sum would double: the mean is the point
    padded = np.concatenate([codes, rng.random((1, 3, 8)).astype(np.float32)], 1)  # junk in padded positions
    pmask = np.concatenate([mask, np.zeros((1, 3), np.int32)], 1)
    np.testing.assert_allclose(
        np.asarray(mean_pool(jnp.asarray(padded), jnp.asarray(pmask))), np.asarray(once), rtol=1e-6
    )


def test_sae_embedder_batches_consistently(tiny_model, tiny_sae):
    emb = ModelEmbedder(tiny_model, HOOK, "sae", load_sae(tiny_sae), batch_size=2)
    together = emb(TEXTS)
    assert sp.issparse(together) and together.shape == (len(TEXTS), 64)
    assert together.data.min() >= 0 and together.nnz > 0
    alone = sp.vstack([emb([t]) for t in TEXTS])
    np.testing.assert_allclose(together.toarray(), alone.toarray(), rtol=1e-5, atol=1e-6)
    backwards = emb(TEXTS[::-1])
    np.testing.assert_allclose(backwards.toarray(), together.toarray()[::-1], rtol=1e-5, atol=1e-6)


def test_hidden_embedding_is_mean_without_bos(tiny_model):
    emb = ModelEmbedder(tiny_model, HOOK, "hidden", batch_size=4)
    toks, mask = tiny_model.to_tokens(["play some music"])
    _, cache = tiny_model.run_with_cache(toks, [HOOK], pad_mask=mask)
    expected = np.asarray(cache[HOOK])[0, 1:].mean(0)  # positions after BOS
    np.testing.assert_allclose(emb(["play some music"])[0], expected, rtol=1e-4, atol=1e-5)
    neurons = ModelEmbedder(tiny_model, HOOK, "neurons", batch_size=4)
    assert neurons(["play some music"]).shape == (1, 32)
