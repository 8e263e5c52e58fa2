"""circuit-tracer's `max_feature_nodes` loop for prompts whose rows do not fit in memory: the rows are
written to a file as they are computed (circuit-tracer offloads its `edge_matrix` to disk too) and read back
a block at a time, and each re-ranking reads them twice, never whole.

`partial_influences` is circuit-tracer's `compute_partial_influences`, computed on the rows' own nodes: a
node's influence is `p_1 + p_2 + ...` with `p_{k+1} = p_k[row_node] @ A_n`, which is zero except on the
computed rows' nodes until the last step; so the series runs on the small (rows, rows) block
`A_n[:, row_node]` and one product with the whole buffer gives every column's total.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

MAX_ITER = 128  # circuit-tracer's bound on the partial series
BLOCK_BYTES = 256 * 2**20  # rows read back at a time


class RowBuffer:
    """(n_rows, n_cols) float32 rows in a temporary file: `write` a block of rows, read `[start:stop]`."""

    def __init__(self, n_rows: int, n_cols: int, folder: str | None = None) -> None:
        self.shape = (n_rows, n_cols)
        self._file = tempfile.TemporaryFile(dir=folder)
        self._file.truncate(n_rows * n_cols * 4)  # sparse: unwritten rows read as zeros

    def write(self, start: int, rows: np.ndarray) -> None:
        os.pwrite(self._file.fileno(), np.ascontiguousarray(rows, np.float32).tobytes(), start * self.shape[1] * 4)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        n = max(0, stop - start) * self.shape[1]
        data = os.pread(self._file.fileno(), n * 4, start * self.shape[1] * 4)
        return np.frombuffer(data, np.float32).reshape(-1, self.shape[1])

    def close(self) -> None:
        self._file.close()


def blocks(n_rows: int, n_cols: int) -> range:
    """Row starts of blocks of about BLOCK_BYTES."""
    return range(0, n_rows, max(1, BLOCK_BYTES // max(1, 4 * n_cols)))


def partial_influences(edges, probs, row_node, max_iter: int = MAX_ITER) -> np.ndarray:
    """circuit-tracer's `compute_partial_influences`: each node's influence on the logits through the rows
    computed so far, (columns,) float32. `edges` (rows, nodes before the logits), an array or a `RowBuffer`,
    in computed order; `row_node` each row's node (a logit's is its node id, past the columns); rows not yet
    computed are zero and add nothing. NaNs if the series has not ended after `max_iter` terms (a cycle)."""
    probs, row_node = np.asarray(probs, np.float32), np.asarray(row_node, np.int64)
    n_rows, n_cols = edges.shape
    is_feature = row_node < n_cols
    cols = np.where(is_feature, row_node, 0)
    rowsum, square = np.zeros(n_rows, np.float32), np.zeros((n_rows, n_rows), np.float32)
    step = blocks(n_rows, n_cols).step
    for i in blocks(n_rows, n_cols):
        a = np.abs(np.asarray(edges[i : i + step]))
        rowsum[i : i + len(a)] = np.maximum(a.sum(1), 1e-8)
        square[i : i + len(a)] = a[:, cols] * is_feature / rowsum[i : i + len(a), None]
    q = np.where(is_feature, 0.0, probs[np.clip(row_node - n_cols, 0, len(probs) - 1)]).astype(np.float32)
    total = np.zeros(n_rows, np.float32)
    for _ in range(max_iter + 1):
        if not q.any():
            break
        total, q = total + q, q @ square
    else:
        return np.full(n_cols, np.nan, np.float32)
    out = np.zeros(n_cols, np.float32)
    for i in blocks(n_rows, n_cols):
        a = np.abs(np.asarray(edges[i : i + step]))
        out += (total[i : i + len(a)] / rowsum[i : i + len(a)]) @ a
    return out


class Ranking(NamedTuple):
    """circuit-tracer's `max_feature_nodes` rule: how many features, and how often they are re-ranked."""

    probs: np.ndarray  # (n_logits,) float32 logit probabilities, the influence's weights
    max_feature_nodes: int
    batch_size: int
    update_interval: int  # batches between re-rankings


def ranked_rows(
    compute: Callable[[np.ndarray], np.ndarray], n_logits: int, n_feat: int, n_cols: int, r: Ranking, tick
) -> tuple[np.ndarray, np.ndarray]:
    """(the rows of the chosen features, then the logits, against the kept columns and the logits; the
    chosen features' indices, sorted): circuit-tracer's `max_feature_nodes` loop. `compute(idx)` gives rows
    `idx` (logits first, then features) against the n_cols nodes before the logits. The logit rows first;
    then, every `update_interval` batches, the unvisited features ranked by their influence through the rows
    so far (stable order on ties), and the next batches taken from the top."""
    n_rows = n_logits + r.max_feature_nodes
    buf = RowBuffer(n_rows, n_cols)
    try:
        row_node = np.zeros(n_rows, np.int64)  # each row's node (logit node ids, then feature indices)
        for i in range(0, n_logits, r.batch_size):
            idx = np.arange(i, min(i + r.batch_size, n_logits))
            buf.write(i, compute(idx))
            row_node[idx] = n_cols + idx
            tick(len(idx))
        visited, st = np.zeros(n_feat, bool), n_logits
        while st < n_rows:
            infl = partial_influences(buf, r.probs, row_node)[:n_feat]
            if np.isnan(infl).any():
                raise RuntimeError("the partial influences did not converge: the rows so far have a cycle")
            rank = np.argsort(-infl, kind="stable")
            pending = rank[~visited[rank]][: min(r.update_interval * r.batch_size, n_rows - st)]
            for j in range(0, len(pending), r.batch_size):
                f = pending[j : j + r.batch_size]
                buf.write(st, compute(n_logits + f))
                row_node[st : st + len(f)], visited[f], st = f, True, st + len(f)
                tick(len(f))
        selected = np.flatnonzero(visited)
        return _gather(buf, row_node, selected, n_logits, n_feat), selected
    finally:
        buf.close()


def _gather(buf: RowBuffer, row_node: np.ndarray, selected: np.ndarray, n_logits: int, n_feat: int) -> np.ndarray:
    """The buffer's rows in graph order (chosen features by index, then logits) against the graph's columns
    (chosen features, errors and tokens, then zeros for the logits), a block of rows at a time."""
    n_rows, n_cols = buf.shape
    keep = np.concatenate([selected, np.arange(n_feat, n_cols)])
    dest = np.empty(n_rows, np.int64)  # each buffer row's row in the graph
    dest[:n_logits] = len(selected) + np.arange(n_logits)
    dest[n_logits:] = np.searchsorted(selected, row_node[n_logits:])
    out = np.zeros((n_rows, len(keep) + n_logits), np.float32)
    step = blocks(n_rows, n_cols).step
    for i in blocks(n_rows, n_cols):
        block = buf[i : i + step]
        out[dest[i : i + len(block)], : len(keep)] = block[:, keep]
    return out
