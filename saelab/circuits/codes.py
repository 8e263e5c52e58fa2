"""Circuit heads from discrete SAE codes (O'Neill & Bui, arXiv 2405.12522, sections 3.2-3.4).

Each head's output after its output projection (`attn.hook_result`) is averaged over the positions of a
prompt, giving one d_model vector per (prompt, head). One small SAE is trained on all of them (positives and
negatives, all heads) and each vector becomes one integer code, its most active latent. A head that takes
part in the task produces codes on positive prompts that never occur on negative ones: the node score is
u_h = |P_h \\ N_h|, and a softmax over heads turns it into the paper's ranking. The edge variant scores a
head pair by the code pairs seen on positives and never on negatives.

Two departures measured on SmolLM2-135M (patching ground truth) and offered as options, defaults of `run`:
removing each head's mean before training ("center": raw vectors mostly encode which head they come from,
and high-variance heads then get a new code on every prompt, so u_h measures variance rather than task
use), and reading the last prompt position instead of the mean over positions. The function defaults here
are the paper's recipe.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.circuits.sae import TrainResult, codes, train_sae
from saelab.circuits.tasks import TaskData
from saelab.models import HookContext, Model, ModelConfig, forward
from saelab.sae import check_finite

Positions = Literal["all", "last"]
Scaling = Literal["mean-norm", "unit", "center", "none"]


class CodesResult(NamedTuple):
    """Scores of the SAE-code method; heads are flattened layer-major (index = layer * n_heads + head)."""

    node: np.ndarray  # (n_layers, n_heads) u_h = |P_h \ N_h|, or positions="aligned": the chosen score
    node_softmax: np.ndarray  # (n_layers, n_heads) softmax of u over all heads (the paper's ranking)
    edges: np.ndarray  # (n_heads_total, n_heads_total) e_ij = |P_ij \ N_ij| over code pairs, symmetric
    edge_node: np.ndarray  # (n_layers, n_heads) mean edge score of a head to the heads of other layers
    pos_codes: np.ndarray  # (n_pos, n_heads_total) int
    neg_codes: np.ndarray  # (n_neg, n_heads_total) int
    train: TrainResult
    runtime_s: float  # activations, training and scoring, compilation included
    activations_s: float  # of which the model forwards for the head vectors
    train_s: float  # of which the SAE training
    others: dict[str, np.ndarray] = {}  # positions="aligned": node scores under the other statistics, by name


def sae_codes(
    model: Model,
    task: TaskData,
    *,
    latents: int = 200,
    l1: float = 0.02,
    epochs: int = 500,
    lr: float = 1e-3,
    seed: int = 0,
    positions: Positions = "all",
    scaling: Scaling = "mean-norm",
) -> CodesResult:
    """The whole method on the pairs of `task` (the paper uses 5-10 prompts, positives and negatives)."""
    t0 = time.perf_counter()
    pos, neg = head_vectors(model, task, positions)  # (n, n_heads_total, d_model) each
    t1 = time.perf_counter()
    n, h, d = pos.shape
    x = scale_vectors(np.concatenate([pos, neg]), scaling).reshape(-1, d)
    train = train_sae(x, latents, l1, epochs, lr, seed)
    check_finite(train.sae, f"trained on the {task.name!r} head outputs (lower lr or l1)")
    t2 = time.perf_counter()
    c = codes(train.sae, x).reshape(2 * n, h)
    return CodesResult(
        *code_scores(c, n, model.cfg, lambda e: edge_node_scores(e, model.cfg.n_heads)),
        train,
        time.perf_counter() - t0,
        t1 - t0,
        t2 - t1,
    )


def code_scores(
    c: np.ndarray, n: int, cfg: ModelConfig, edge_node: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, ...]:
    """From the codes `c` (2n, heads) of n positive then n negative prompts: node scores u, softmax(u), edge
    scores, edge-node scores (by `edge_node`, one score per head), positive codes, negative codes."""
    pos_codes, neg_codes = c[:n], c[n:]
    u = node_scores(pos_codes, neg_codes)
    e = edge_scores(pos_codes, neg_codes)
    shape = (cfg.n_layers, cfg.n_heads)
    return u.reshape(shape), softmax(u).reshape(shape), e, edge_node(e).reshape(shape), pos_codes, neg_codes


def head_vectors(
    model: Model, task: TaskData, positions: Positions = "all", chunk: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt and head, `attn.hook_result` averaged over the prompt's real positions ("all") or taken at
    its last position ("last"). Tokens appended only for scoring are dropped first. `chunk` prompts per
    forward bound the memory (every head's output at every position is cached).
    -> (positives, negatives), each (n, n_layers * n_heads, d_model)."""
    end = task.pos.shape[1] - task.scoring_tokens
    w = task.mask[:, :end].astype(np.float32)
    if positions == "last":
        w = np.zeros_like(w)
        w[:, -1] = 1
    pos, neg = weighted_results(model, task, w[:, None, :], chunk)
    return pos[:, 0], neg[:, 0]


def weighted_results(
    model: Model, task: TaskData, weights: np.ndarray, chunk: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """sum_s weights[b, r, s] * hook_result[b, s] per prompt b, read-out r and head, positives and negatives.
    weights: (n, r, end) over the first `end` columns of the task (its prompt tokens), normalised here so
    that each read-out averages. -> (pos, neg), each (n, r, n_layers * n_heads, d_model)."""
    end = weights.shape[-1]
    # left-pad to a multiple of 4 columns, so that prompt draws of similar length share one compiled forward
    # while the forward (FLOP-bound) wastes at most 3 columns: 16 made greater-than's 18 tokens 32
    left = -end % 4
    pad = np.pad(task.mask[:, :end], ((0, 0), (left, 0)))
    w = np.pad(weights / np.maximum(weights.sum(-1, keepdims=True), 1e-30), ((0, 0), (0, 0), (left, 0)))
    fn = _weighted_fn(model.cfg)
    n = task.n
    size = min(n, chunk)
    rows = -(-n // size) * size  # whole chunks: one compiled shape, the last chunk padded with real rows
    take = np.arange(rows) % n
    pad, w = pad[take], w[take].astype(np.float32)
    out = []
    for t in (task.pos, task.neg):
        toks = np.pad(t[:, :end], ((0, 0), (left, 0)))[take]
        parts = [
            np.asarray(fn(model.params, toks[s : s + size], pad[s : s + size], w[s : s + size]))
            for s in range(0, rows, size)
        ]
        out.append(np.concatenate(parts)[:n])
    return out[0], out[1]


def scale_vectors(x: np.ndarray, scaling: Scaling) -> np.ndarray:
    """x: (prompts, heads, d). "mean-norm": one factor for all, so vectors have unit mean norm (relative
    head magnitudes kept, as in the paper); "unit": every vector to unit norm; "center": each head's mean
    over prompts removed, then unit mean norm (the SAE sees only how a head varies across prompts)."""
    if scaling == "unit":
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    if scaling == "center":
        x = x - x.mean(axis=0, keepdims=True)
    if scaling in ("mean-norm", "center"):
        return x / max(float(np.linalg.norm(x, axis=-1).mean()), 1e-12)
    if scaling == "none":
        return x
    raise ValueError(f"unknown scaling {scaling!r}; choose mean-norm, unit, center or none")


def node_scores(pos_codes: np.ndarray, neg_codes: np.ndarray) -> np.ndarray:
    """u_h = |P_h \\ N_h|: distinct codes of head h on positives that never occur on negatives.
    pos_codes: (n_pos, heads), neg_codes: (n_neg, heads) -> (heads,) int."""
    return np.asarray([len(set(p) - set(q)) for p, q in zip(pos_codes.T, neg_codes.T, strict=True)])


def edge_scores(pos_codes: np.ndarray, neg_codes: np.ndarray) -> np.ndarray:
    """e_ij = |P_ij \\ N_ij| over code pairs (code of head i, code of head j) on the same prompt.
    -> (heads, heads) symmetric, with e_hh = u_h. Sparse: each head's codes are renumbered 0..K_h-1, so for
    head i every (c_i, j, c_j) is one index into a K_i x sum_j K_j table; positives and negatives mark it, and
    the cells marked only by positives are summed per j. No sort and no prompts^2 term: the cost grows with
    prompts x heads and the number of distinct codes per head."""
    pos_codes, neg_codes = np.asarray(pos_codes), np.asarray(neg_codes)
    n, heads = pos_codes.shape
    both = np.concatenate([pos_codes, neg_codes])
    local = np.empty(both.shape, np.int64)
    sizes = np.empty(heads, np.int64)
    for h in range(heads):
        uniq, local[:, h] = np.unique(both[:, h], return_inverse=True)
        sizes[h] = len(uniq)
    offset = np.r_[0, np.cumsum(sizes)[:-1]]
    width = int(sizes.sum())
    cols = offset[None, :] + local  # (prompts, heads) column of (j, c_j)
    out = np.zeros((heads, heads), np.int64)
    for i in range(heads):
        keys = local[:, i, None] * width + cols
        seen_pos = np.zeros(sizes[i] * width, bool)
        seen_neg = np.zeros(sizes[i] * width, bool)
        seen_pos[keys[:n].ravel()] = True
        seen_neg[keys[n:].ravel()] = True
        only = (seen_pos & ~seen_neg).reshape(sizes[i], width).sum(axis=0)
        out[i] = np.add.reduceat(only, offset)
    return out


def edge_scores_dense(pos_codes: np.ndarray, neg_codes: np.ndarray) -> np.ndarray:
    """`edge_scores` by dense comparison of every prompt pair, (n_pos^2 + n_pos n_neg) x heads^2 work: the
    reference the sparse count is tested against."""
    pp = pos_codes[:, None, :] == pos_codes[None, :, :]  # (n_pos, n_pos, heads)
    pn = pos_codes[:, None, :] == neg_codes[None, :, :]  # (n_pos, n_neg, heads)
    in_neg = np.einsum("pqi,pqj->pij", pn.astype(np.int32), pn.astype(np.int32)) > 0  # (n_pos, heads, heads)
    earlier = np.tril(np.ones((len(pos_codes),) * 2, bool), k=-1)  # p' < p
    seen = np.einsum("pqi,pqj->pij", (pp & earlier[:, :, None]).astype(np.int32), pp.astype(np.int32)) > 0
    return (~in_neg & ~seen).sum(axis=0)


def edge_node_scores(edges: np.ndarray, n_heads: int) -> np.ndarray:
    """Node score from edges: a head's mean edge score to the heads of other layers (same-layer heads cannot
    be connected). Heads in many positive-only code pairs score high even when no single code of theirs is
    positive-only. -> (heads,)"""
    layer = np.arange(len(edges)) // n_heads
    other = layer[:, None] != layer[None, :]
    return (edges * other).sum(axis=1) / np.maximum(other.sum(axis=1), 1)


def top_edges(edges: np.ndarray, n_heads: int, k: int = 20) -> list[tuple[str, str, int]]:
    """The k highest-scoring head pairs (earlier layer first) as ("L.H", "L.H", score)."""
    layer = np.arange(len(edges)) // n_heads
    i, j = np.nonzero(layer[:, None] < layer[None, :])
    order = np.argsort(-edges[i, j], kind="stable")[:k]
    name = [f"{a // n_heads}.{a % n_heads}" for a in range(len(edges))]
    return [(name[i[o]], name[j[o]], int(edges[i[o], j[o]])) for o in order]


def softmax(u: np.ndarray) -> np.ndarray:
    """exp(u - max u) normalised over all entries (the paper's ranking; it keeps the order of u)."""
    e = np.exp(u - u.max())
    return e / e.sum()


@functools.lru_cache(maxsize=16)  # compiled programs keyed by config; the weights are arguments
def _weighted_fn(cfg: ModelConfig):
    names = tuple(f"blocks.{i}.attn.hook_z" for i in range(cfg.n_layers))

    def run(params, toks, pad_mask, w):
        cache = forward(params, cfg, toks, pad_mask, HookContext(cache=names), cfg.n_layers).cache
        # hook_result = z_h @ W_O[h] is linear in z, so weighting z over positions before projecting gives the
        # same read-outs without materialising heads x d_model per token
        means = [
            jnp.einsum("brhd,hdm->brhm", jnp.einsum("bshd,brs->brhd", cache[n], w), params.layers[i].attn.W_O)
            for i, n in enumerate(names)
        ]  # each (b, r, heads, d_model)
        return jnp.concatenate(means, axis=2)

    return jax.jit(run)
