"""Shuffle quality of on-the-fly training (`data.source = "model"`) against a store's global shuffle.

For the same token stream (windows packed from the corpus as a harvest packs them, BOS left out), each
training batch's rows are mapped to their documents, in the order the store's loader (`saelab.store.shuffle`
over the whole stream) and the on-the-fly buffer (`saelab.train.stream.fill_permutation` over each fill of
`buffer_batches` batches) would draw them. Printed per scheme: distinct documents per batch, the chance that
two rows of a batch share a document, and the Jaccard overlap of consecutive batches' document sets (mean
and standard deviation over batches, the spread). No model forward is needed: only token positions matter.

    python experiments/shuffle_quality.py [--corpus python-docs] [--tokens 1000000] [--batch 4096]
"""

from __future__ import annotations

import argparse

import numpy as np

from saelab.data import open_corpus, pack_for_model
from saelab.models import Model
from saelab.store.shuffle import permute
from saelab.train.stream import fill_permutation


def stream_docs(corpus: str, tokens: int, context: int) -> np.ndarray:
    """Document index of each training row of the stream (positions 1.. of every window), in stream order."""
    model = Model.load("smollm2-135m")
    docs, n = [], 0
    for b in pack_for_model(open_corpus(corpus, "train"), model, context=context, batch=64):
        docs.append(b.doc[:, 1:].reshape(-1))
        n += docs[-1].size
        if n >= tokens:
            break
    return np.concatenate(docs)[:tokens]


def batch_stats(batches: list[np.ndarray]) -> dict[str, float]:
    distinct, pairs, jac = [], [], []
    sets = [set(np.unique(b).tolist()) for b in batches]
    for b in batches:
        _, counts = np.unique(b, return_counts=True)
        distinct.append(len(counts))
        pairs.append(float((counts * (counts - 1)).sum()) / (len(b) * (len(b) - 1)))
    for a, c in zip(sets, sets[1:], strict=False):
        jac.append(len(a & c) / len(a | c))
    return {
        "docs_per_batch": float(np.mean(distinct)),
        "same_doc_pair": float(np.mean(pairs)),
        "jaccard_mean": float(np.mean(jac)),
        "jaccard_std": float(np.std(jac)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="python-docs")
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--buffers", type=int, nargs="+", default=[1, 4, 16])
    args = ap.parse_args()
    docs = stream_docs(args.corpus, args.tokens, args.context)
    n_batches = len(docs) // args.batch
    schemes = {}
    for k in args.buffers:
        size = k * args.batch
        order = np.concatenate(
            [f * size + np.asarray(fill_permutation(0, f, size)) for f in range(n_batches // k)]
        )  # stream rows in draw order, whole fills only
        schemes[f"buffer {k}"] = [
            docs[order[i * args.batch : (i + 1) * args.batch]] for i in range(len(order) // args.batch)
        ]
    perm = permute(np.arange(n_batches * args.batch), len(docs), 0, 0)
    schemes["store (global)"] = [docs[perm[i * args.batch : (i + 1) * args.batch]] for i in range(n_batches)]
    n_docs = len(np.unique(docs))
    print(f"{args.corpus}: {len(docs):,} rows, {n_docs} documents, batch {args.batch}, context {args.context}")
    print(f"{'scheme':<16}{'batches':>8}{'docs/batch':>12}{'P(same doc)':>13}{'Jaccard mean':>14}{'Jaccard std':>13}")
    for name, batches in schemes.items():
        s = batch_stats(batches)
        print(
            f"{name:<16}{len(batches):>8}{s['docs_per_batch']:>12.1f}{s['same_doc_pair']:>13.5f}"
            f"{s['jaccard_mean']:>14.3f}{s['jaccard_std']:>13.3f}"
        )


if __name__ == "__main__":
    main()
