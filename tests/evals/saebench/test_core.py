"""SAEBench core against sae-bench 0.6's own functions (`evals/core/main.py`) on the same activations, tokens and
SAE: the sparsity / variance / shrinkage numbers, the densities, the weight cosines, and the CE / KL scores."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from saelab.evals.saebench import core, core_splice
from saelab.sae import decode, encode
from tests.evals.saebench.conftest import D_IN, HOOK
from tests.peer_modules import peer

BATCH, CTX, VOCAB = 3, 7, 11


class _Store:
    """What sae-bench reads from an ActivationsStore: token batches (here just the batch index)."""

    def __init__(self, batches):
        self.batches, self.i = batches, 0

    def get_batch_tokens(self, _n):
        b = self.batches[self.i % len(self.batches)]
        self.i += 1
        return b


class _CacheModel:
    """A model whose cached hook value is the prepared activation batch its token batch points at."""

    def __init__(self, acts):
        self.acts = acts

    def run_with_cache(self, tokens, **_):
        return None, {HOOK: self.acts[int(tokens[0, 0])]}


def test_sparsity_variance_shrinkage_density_match_saebench(twin) -> None:
    """Every scalar of `get_sparsity_and_variance_metrics` and the densities of `calculate_misc_metrics` agree to
    float32 rounding (rtol 1e-4: the batch reductions run in float32 on both sides, in different orders)."""
    main = peer("sae_bench.evals.core.main")
    rng = np.random.default_rng(1)
    acts = [rng.normal(size=(BATCH, CTX, D_IN)).astype(np.float32) * 2 + 0.5 for _ in range(3)]
    tokens = [torch.full((BATCH, CTX), i) for i in range(3)]
    theirs, feats = main.get_sparsity_and_variance_metrics(
        twin.torch_sae,
        _CacheModel([torch.from_numpy(a) for a in acts]),
        _Store(tokens),
        n_batches=3,
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=True,
        eval_batch_size_prompts=BATCH,
        model_kwargs={},
    )
    stats = []
    for a in acts:
        x = jnp.asarray(a.reshape(-1, D_IN))
        z = encode(twin.params, x, twin.cfg)
        stats.append(core.recon_stats(x, decode(twin.params, z), z))
    ours = core.finish_recon(stats)
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-4, err_msg=key)
    misc = main.calculate_misc_metrics({**feats, "max_encoder_cosine_sim": [0.0], "max_decoder_cosine_sim": [0.0]})
    for key in ("frac_alive", "freq_over_1_percent", "normalized_freq_over_1_percent"):
        np.testing.assert_allclose(ours[key], misc[key], rtol=1e-5, err_msg=key)
    assert 0 < ours["frac_alive"] <= 1 and ours["explained_variance"] != pytest.approx(
        ours["explained_variance_legacy"]
    )


def test_max_cosines_match_saebench(twin) -> None:
    """Mean max encoder / decoder cosine equal `calculate_max_cosine_sim`'s to 1e-6 (the same float32 dot products)."""
    main = peer("sae_bench.evals.core.main")
    ours = core.weight_metrics(twin.params.W_enc, twin.params.W_dec)
    with torch.no_grad():
        enc = main.calculate_max_cosine_sim(twin.torch_sae.W_enc).mean().item()
        dec = main.calculate_max_cosine_sim(twin.torch_sae.W_dec.T).mean().item()
    np.testing.assert_allclose(ours["average_max_encoder_cosine_sim"], enc, atol=1e-6)
    np.testing.assert_allclose(ours["average_max_decoder_cosine_sim"], dec, atol=1e-6)


class _LinearLM:
    """A TransformerLens-shaped toy LM: embedding -> the hook -> unembedding, with `run_with_hooks`."""

    def __init__(self, emb, unemb):
        self.emb, self.unemb = emb, unemb

    def _run(self, tokens, fn=None):
        h = self.emb[tokens]
        if fn is not None:
            h = fn(h.clone(), hook=None)
        logits = h @ self.unemb
        lp = torch.log_softmax(logits[:, :-1], -1)
        return logits, -lp.gather(-1, tokens[:, 1:, None])[..., 0]

    def __call__(self, tokens, return_type="both", loss_per_token=True, **_):
        return self._run(tokens)

    def run_with_hooks(self, tokens, return_type="both", fwd_hooks=(), loss_per_token=True, **_):
        return self._run(tokens, fwd_hooks[0][1])


def test_ce_kl_scores_match_saebench(twin) -> None:
    """`get_downstream_reconstruction_metrics` with BOS (id 0) ignored and kept clean in the splice, on a toy LM
    whose logits are a linear map of the hook, against `core_splice` on the same logits: agree to 1e-5 relative
    (float32 log-softmax on both sides)."""
    main = peer("sae_bench.evals.core.main")
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(VOCAB, D_IN)).astype(np.float32)
    unemb = rng.normal(size=(D_IN, VOCAB)).astype(np.float32) / 2
    toks = [rng.integers(1, VOCAB, size=(BATCH, CTX)) for _ in range(2)]
    for t in toks:
        t[:, 0] = 0  # BOS first, and once more inside a row
        t[1, 3] = 0
    lm = _LinearLM(torch.from_numpy(emb), torch.from_numpy(unemb))
    sae = twin.torch_sae.to(torch.float32)
    theirs = main.get_downstream_reconstruction_metrics(
        sae,
        lm,
        _Store([torch.from_numpy(t) for t in toks]),
        compute_kl=True,
        compute_ce_loss=True,
        n_batches=2,
        eval_batch_size_prompts=BATCH,
        ignore_tokens={0},
        exclude_special_tokens_from_reconstruction=True,
    )
    sums = None
    for t in toks:
        h = jnp.asarray(emb)[t]  # (b, t, d)
        keep = jnp.asarray(t != 0)
        rec = decode(twin.params, encode(twin.params, h.reshape(-1, D_IN), twin.cfg)).reshape(h.shape)
        spliced = jnp.where(keep[..., None], rec, h)
        logits = lambda x: x @ jnp.asarray(unemb)
        out = core_splice.ce_kl_sums(jnp.asarray(t), keep, logits(h), logits(spliced), logits(jnp.zeros_like(h)))
        sums = core_splice.add(sums, out)
    ours = core_splice.finish(sums)
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-5, err_msg=key)
