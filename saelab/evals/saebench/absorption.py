"""SAEBench's feature absorption (Chanin et al. 2024, arXiv 2409.14507; sae-bench 0.6 `evals/absorption/main.py`,
`k_sparse_probing.py`, `feature_absorption*.py`) on the first-letter spelling task.

Steps, with sae-bench's settings: the alphabetic vocabulary split 80/20 into ten-shot prompts (spelling.py); a
26-way probe on the activations at the word token (probes.py: 50 epochs, batch 64, lr 1e-2, weight decay 1e-4); an
L1 probe (0.01) on the SAE codes (batch 4096, weight decay 1e-6); for k = 1..10 the top-k latents of its weights
for each letter, refit by sklearn `LogisticRegression(max_iter=500, class_weight="balanced")`; a letter's main
latents grow with k while the test F1 gains more than 0.03; then every test word of a letter that the probe
scores > 0 gets a fresh prompt (examples from the whole vocabulary) and its absorption (absorption_math.py).
Scores are means over letters whose probe F1 > 0.6; sae-bench reports nothing below 20 such letters
(`saebench_would_report`).

The quick and medium variants sample the vocabulary (sizes.py; `vocabulary: "sampled N of M"` in the result): the
same steps on fewer words, so their numbers are noisier and not comparable to a full run's.
"""

from __future__ import annotations

import random
from typing import Any

import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression

from saelab.evals.saebench import spelling
from saelab.evals.saebench.absorption_math import aggregate, f1, feature_splits, prompt_absorption
from saelab.evals.saebench.context import BenchContext
from saelab.evals.saebench.probes import ProbeConfig, train_probe

MAX_K = 10
L1_PROBE = ProbeConfig(batch_size=4096, weight_decay=1e-6, l1=0.01)


def k_sparse_scores(l1_weight: np.ndarray, z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray):
    """For each letter c and k = 1..MAX_K: (latent ids (k,), test scores (n_test,)) of the sklearn probe on the
    top-k latents of the L1 probe's row c. A letter absent from the training words gets no probes."""
    out: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for c in range(l1_weight.shape[0]):
        target = (y_train == c).astype(np.int64)
        if target.min() == target.max():
            continue
        order = np.argsort(-l1_weight[c], kind="stable")
        out[c] = []
        for k in range(1, MAX_K + 1):
            ids = order[:k]
            lr = LogisticRegression(max_iter=500, class_weight="balanced").fit(z_train[:, ids], target)
            out[c].append((ids, z_test[:, ids] @ lr.coef_[0] + lr.intercept_[0]))
    return out


def evaluate(ctx: BenchContext) -> dict[str, Any]:
    """Absorption of `ctx.sae` at its hook (the hook's layer must be the model's residual stream for the
    definition to mean what sae-bench's does)."""
    rng = random.Random(42)
    full_vocab = spelling.alpha_vocab(ctx.model.tokenizer)
    n_words = ctx.sizes.absorption_words
    vocab = rng.sample(full_vocab, n_words) if n_words is not None and len(full_vocab) > n_words else full_vocab
    train, test = spelling.split_prompts(vocab, rng)
    x_train = spelling.word_activations(ctx, train, "absorption: probe prompts (train)")
    x_test = spelling.word_activations(ctx, test, "absorption: probe prompts (test)")
    y_train = np.array([p.letter for p in train])
    y_test = np.array([p.letter for p in test])
    probe = train_probe(x_train, np.eye(26)[y_train])
    enc, _ = ctx.codec()
    params = ctx.sae.params
    z_train = np.asarray(enc(params, jnp.asarray(x_train)))
    z_test = np.asarray(enc(params, jnp.asarray(x_test)))
    l1 = train_probe(z_train, np.eye(26)[y_train], L1_PROBE)
    sparse = k_sparse_scores(np.asarray(l1.weight), z_train, y_train, z_test)
    probe_scores = np.asarray(probe.scores(jnp.asarray(x_test)))  # (n_test, 26)
    probe_f1, splits = {}, {}
    for c, letter in enumerate(spelling.LETTERS):
        truth = y_test == c
        probe_f1[letter] = f1(truth, probe_scores[:, c] > 0)
        rows = sparse.get(c, [])
        splits[letter] = feature_splits([f1(truth, s > 0) for _, s in rows], [ids.tolist() for ids, _ in rows])
    hits = np.nonzero(probe_scores[np.arange(len(y_test)), y_test] > 0)[0]  # the probe's true positives
    words = [test[i] for i in hits]
    prompts = [spelling.icl_prompt(p.word, vocab, rng) for p in words]
    x_abs = spelling.word_activations(ctx, prompts, "absorption: absorption prompts")
    z_abs = enc(params, jnp.asarray(x_abs))
    letters = np.array([p.letter for p in prompts])
    direction = probe.weight / jnp.linalg.norm(probe.weight, axis=-1, keepdims=True)  # (26, d_in)
    w_dec = params.W_dec / jnp.linalg.norm(params.W_dec, axis=-1, keepdims=True)
    cos = direction @ w_dec.T  # (26, d_sae)
    main = np.zeros((26, ctx.sae.cfg.d_sae), bool)
    for c, letter in enumerate(spelling.LETTERS):
        main[c, splits[letter]] = True
    res = prompt_absorption(jnp.asarray(x_abs), z_abs, direction[letters], cos[letters], jnp.asarray(main[letters]))
    names = np.array([spelling.LETTERS[c] for c in letters])
    per_letter, summary = aggregate(names, np.asarray(res.fraction), np.asarray(res.full), splits, probe_f1)
    good = sum(v > 0.6 for v in probe_f1.values())
    return {
        **summary,
        "saebench_would_report": good >= 20,
        "letters_with_probe_f1_over_0.6": good,
        "vocabulary": f"sampled {len(vocab)} of {len(full_vocab)}" if len(vocab) < len(full_vocab) else "all",
        "vocabulary_size": len(vocab),
        "absorption_prompts": len(prompts),
        "probe_f1": probe_f1,
        "details": [r._asdict() for r in per_letter],
    }


def markdown(m: dict[str, Any]) -> str:
    """The report's absorption section."""
    note = "" if m["saebench_would_report"] else " (fewer than 20 letters: sae-bench would not report a score)"
    return (
        f"Vocabulary: {m['vocabulary']}; {m['absorption_prompts']} absorption prompts; "
        f"{m['letters_with_probe_f1_over_0.6']} letters with probe F1 > 0.6{note}.\n\n"
        "| metric | value |\n| --- | --- |\n"
        f"| mean_absorption_fraction_score | {m['mean_absorption_fraction_score']:.4f} |\n"
        f"| mean_full_absorption_score | {m['mean_full_absorption_score']:.4f} |\n"
        f"| mean_num_split_features | {m['mean_num_split_features']:.3f} |\n"
    )
