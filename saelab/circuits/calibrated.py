"""saelab's SAE-code score: codes read where the pairs are token-aligned, counted on many fresh pairs, and the
node score calibrated against a null so that a head whose codes carry no task information scores about 0.

Why: u_h = |P_h \\ N_h| grows with a head's number of distinct codes even when its codes ignore the task
(E u = K (1 - (1 - 1/K)^n) (1 - 1/K)^n for K equally likely codes and n prompts of each kind), so heads that
merely vary outrank a perfectly selective head (u = 1). The null keeps everything but the task labels: the
positive and negative prompt of each pair swap roles at random (the pairs are exchangeable under "the head
ignores the task"). The score is z_h = (u_h - mean_null u_h) / sd_null u_h, the sd floored at
1 / sqrt(permutations) (the null's resolution) so a null that never varies does not divide by zero.

Where: every read-out position is one token role shared by all pairs, found from the pair itself, never from
template indices: "end" (the last prompt token), "diff" (the last token where positive and negative differ)
and "ref" (the last token after it whose positive token repeats one of the changed tokens: IOI's S2, the
docstring's last `:param` name). A role missing in some pair is dropped. A head's score is its best z over
the roles. The SAE trains on a handful of pairs (all roles together, each head and role centred by its mean
on those pairs, then scaled to unit mean norm); the codes are counted on `count` fresh pairs.

Which statistic: all three calibrated ones go through that null. "soft" (the default) is the L1 norm of the
summed paired differences of the SAE's latent activations, ||sum_i f(pos_i) - f(neg_i)||_1 / n
(`activation_shift`); "shift" is the same on one-hot codes, the total variation between a head's code
histograms on positives and on negatives (McNemar's paired count summed over codes); "z" is u_h's. Both
shifts read how much latent mass the task moves, where u_h only asks whether a code never appears on the
negatives, which with many counted pairs rarely happens; the soft one also sees mass that moves while the
argmax stays put. "pair" (`pair_disagreement`, how often a pair's minimal change moves a head's code) is kept
uncalibrated beside them: a label swap cannot change it, so no such null exists for it. Chosen on seed 0 of
SmolLM2 (AUC soft / shift / z / pair: IOI 0.913 / 0.832 / 0.574 / 0.958, greater-than 0.852 / 0.903 / 0.870 /
0.889, docstring 0.873 / 0.799 / 0.751 / 0.905): the calibrated score with the best worst task (and mean).
Every run also stores the others as sae-codes-shift, sae-codes-z and sae-codes-pair.
"""

from __future__ import annotations

import time
from typing import Literal

import jax
import numpy as np

from saelab.circuits.codes import CodesResult, edge_node_scores, edge_scores, node_scores, softmax, weighted_results
from saelab.circuits.sae import as_codes, encode, train_sae
from saelab.circuits.tasks import TaskData
from saelab.models import Model
from saelab.sae import SAEParams, check_finite

ROLES = ("end", "diff", "ref")
Score = Literal["soft", "shift", "z", "pair"]


def aligned_positions(task: TaskData) -> dict[str, np.ndarray]:
    """Per role, the column of that role's token in every pair: {"end" | "diff" | "ref": (n,) int}, columns
    of `task.pos` (scoring-only tokens excluded). A role absent from any pair is left out."""
    end = task.pos.shape[1] - task.scoring_tokens
    pos, neg, mask = task.pos[:, :end], task.neg[:, :end], task.mask[:, :end].astype(bool)
    out: dict[str, list[int]] = {r: [] for r in ROLES}
    for p, q, m in zip(pos, neg, mask, strict=True):
        out["end"].append(end - 1)
        diff = np.nonzero((p != q) & m)[0]
        if len(diff) == 0:
            continue
        out["diff"].append(int(diff[-1]))
        later = np.arange(diff[-1] + 1, end)
        ref = later[np.isin(p[later], p[diff])]
        if len(ref):
            out["ref"].append(int(ref[-1]))
    return {r: np.asarray(c) for r, c in out.items() if len(c) == task.n}


def role_vectors(model: Model, task: TaskData) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Head outputs at each aligned role. -> (roles, pos, neg), pos and neg (n, roles, heads, d_model)."""
    cols = aligned_positions(task)
    end = task.pos.shape[1] - task.scoring_tokens
    w = np.zeros((task.n, len(cols), end), np.float32)
    for r, c in enumerate(cols.values()):
        w[np.arange(task.n), r, c] = 1
    pos, neg = weighted_results(model, task, w)
    return tuple(cols), pos, neg


def null_node_scores(
    pos_codes: np.ndarray, neg_codes: np.ndarray, permutations: int = 100, seed: int = 0
) -> np.ndarray:
    """u_h under random within-pair label swaps. pos_codes, neg_codes: (n, heads) paired rows, codes >= 0.
    -> (permutations, heads) int."""
    n, heads = pos_codes.shape
    k = int(max(pos_codes.max(initial=0), neg_codes.max(initial=0))) + 1
    swap = np.random.default_rng(seed).random((permutations, n)) < 0.5
    out = np.empty((permutations, heads), np.int64)
    base = np.arange(heads)[None, :] * k
    for r in range(permutations):
        s = swap[r][:, None]
        p, q = np.where(s, neg_codes, pos_codes), np.where(s, pos_codes, neg_codes)
        in_p = np.bincount((base + p).ravel(), minlength=heads * k).reshape(heads, k) > 0
        in_q = np.bincount((base + q).ravel(), minlength=heads * k).reshape(heads, k) > 0
        out[r] = (in_p & ~in_q).sum(1)
    return out


def calibrated_scores(
    pos_codes: np.ndarray, neg_codes: np.ndarray, permutations: int = 100, seed: int = 0
) -> np.ndarray:
    """z_h = (u_h - mean null) / max(sd null, 1/sqrt(permutations)) per head. -> (heads,) float."""
    u = node_scores(pos_codes, neg_codes)
    null = null_node_scores(pos_codes, neg_codes, permutations, seed)
    return (u - null.mean(0)) / np.maximum(null.std(0), 1 / np.sqrt(permutations))


def code_shift(pos_codes: np.ndarray, neg_codes: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
    """Total variation between a head's code histograms on positives and on negatives, per head:
    sum_k |#pos(k) - #neg(k)| / (2n). A pair whose two codes agree adds nothing, so this is McNemar's paired
    count summed over codes, and it reads how much mass moves, not whether a code ever appears (as u_h does).
    signs: (r, n) of +-1, each row one within-pair label swap (row = +1 keeps the labels). (n, heads) paired
    rows -> (heads,) or, with signs, (r, heads)."""
    p, q = np.asarray(pos_codes), np.asarray(neg_codes)
    n, heads = p.shape
    k = int(max(p.max(initial=0), q.max(initial=0))) + 1
    s = np.ones((1, n)) if signs is None else np.asarray(signs, float)
    base = (np.arange(heads) * k)[None, :]
    idx = np.concatenate([base + p, base + q]).ravel()  # (2n * heads,)
    out = np.empty((len(s), heads))
    for r, sign in enumerate(s):
        w = np.concatenate([np.repeat(sign, heads), -np.repeat(sign, heads)])
        out[r] = np.abs(np.bincount(idx, weights=w, minlength=heads * k).reshape(heads, k)).sum(1) / (2 * n)
    return out[0] if signs is None else out


def calibrated_shift(
    pos_codes: np.ndarray, neg_codes: np.ndarray, permutations: int = 100, seed: int = 0
) -> np.ndarray:
    """`code_shift` as a z-score against within-pair label swaps, the sd floored at the null's resolution (one
    swap moves the shift by at most 1/n: 1 / (n sqrt(permutations))). -> (heads,) float."""
    n = np.asarray(pos_codes).shape[0]
    t = code_shift(pos_codes, neg_codes)
    null = code_shift(pos_codes, neg_codes, _swaps(permutations, n, seed))
    return (t - null.mean(0)) / np.maximum(null.std(0), 1 / (n * np.sqrt(permutations)))


def activation_shift(pos_acts: np.ndarray, neg_acts: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
    """`code_shift` with each code's one-hot vector replaced by the SAE's latent activations: the L1 norm of the
    summed paired differences, ||sum_i (f(pos_i) - f(neg_i))||_1 / n. It reads how much latent mass the task
    moves, also where the argmax stays put. pos_acts, neg_acts: (n, heads, latents) paired rows; signs as in
    `code_shift`. -> (heads,) or (r, heads)."""
    d = np.asarray(pos_acts, np.float32) - np.asarray(neg_acts, np.float32)
    n = d.shape[0]
    if signs is None:
        return np.abs(d.sum(0)).sum(-1) / n
    flips = np.asarray(signs, np.float32) @ d.reshape(n, -1)  # (r, heads * latents), one BLAS call
    return np.abs(flips.reshape(len(flips), *d.shape[1:])).sum(-1) / n


def calibrated_activation_shift(
    pos_acts: np.ndarray, neg_acts: np.ndarray, permutations: int = 100, seed: int = 0
) -> np.ndarray:
    """`activation_shift` as a z-score against within-pair label swaps (sd floored at 1e-12 of the mean
    shift, only so that identical pairs give 0). -> (heads,) float."""
    n = np.asarray(pos_acts).shape[0]
    t = activation_shift(pos_acts, neg_acts)
    null = activation_shift(pos_acts, neg_acts, _swaps(permutations, n, seed))
    return (t - null.mean(0)) / np.maximum(null.std(0), 1e-12 * np.maximum(null.mean(0), 1e-30))


@jax.jit
def _encode_centred(sae: SAEParams, x: jax.Array, mu: jax.Array, scale: float) -> jax.Array:
    """Latent activations f((x - mu) / scale) of head vectors x (..., d), centred as the training set was; in
    one program, since the count set's vectors (250 pairs x roles x 270 heads x d_model) are hundreds of MB
    and NumPy's unfused passes over them took longer than the encoding. -> (..., latents)"""
    return encode(sae, ((x - mu) / scale).reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)


def _swaps(permutations: int, n: int, seed: int) -> np.ndarray:
    """(permutations, n) of +-1: -1 swaps that pair's positive and negative."""
    return np.where(np.random.default_rng(seed).random((permutations, n)) < 0.5, -1.0, 1.0)


def pair_disagreement(pos_codes: np.ndarray, neg_codes: np.ndarray) -> np.ndarray:
    """Fraction of pairs whose positive and negative prompt get different codes, per head: how often the
    minimal change of a pair moves the head's code, the code-level analogue of what patching measures.
    (n, heads) paired rows -> (heads,) in [0, 1]. Not calibrated: a head whose code is noise scores
    1 - sum_k p_k^2, and one that reads only what a pair shares scores 0."""
    return (np.asarray(pos_codes) != np.asarray(neg_codes)).mean(axis=0)


SCORES = {
    "soft": calibrated_activation_shift,
    "shift": calibrated_shift,
    "z": calibrated_scores,
    "pair": pair_disagreement,
}


def calibrated_codes(
    model: Model,
    train_task: TaskData,
    count_task: TaskData,
    *,
    latents: int = 200,
    l1: float = 0.5,
    epochs: int = 100,
    lr: float = 3e-3,
    seed: int = 0,
    permutations: int = 100,
    score: Score = "soft",
) -> tuple[CodesResult, dict[str, np.ndarray]]:
    """The whole method: an SAE on `train_task`'s role vectors, codes of `count_task`'s, node scores per
    role (`SCORES`: "soft", "shift" and "z" calibrated, "pair" not; module docstring). -> (result
    with node = the best `score` over roles and `others` the best of the other statistics, {role: `score`
    (n_layers, n_heads)})."""
    t0 = time.perf_counter()
    roles, tp, tn = role_vectors(model, train_task)
    count_roles = tuple(aligned_positions(count_task))
    if count_roles != roles:
        raise ValueError(f"aligned roles differ between training {roles} and counting {count_roles} prompts")
    _, cp, cn = role_vectors(model, count_task)
    t1 = time.perf_counter()
    train = np.concatenate([tp, tn])  # (2m, roles, heads, d)
    mu = train.mean(0, keepdims=True)
    scale = max(float(np.linalg.norm(train - mu, axis=-1).mean()), 1e-12)
    d = train.shape[-1]
    fit = train_sae(((train - mu) / scale).reshape(-1, d), latents, l1, epochs, lr, seed)
    check_finite(fit.sae, f"trained on the {train_task.name!r} head outputs (lower lr or l1)")
    t2 = time.perf_counter()
    pos_acts, neg_acts = (np.asarray(_encode_centred(fit.sae, c, mu, scale)) for c in (cp, cn))
    pos_codes, neg_codes = as_codes(pos_acts), as_codes(neg_acts)
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    if score not in SCORES:
        raise ValueError(f"score must be one of {list(SCORES)}, got {score!r}")

    def per_role(name: str) -> dict[str, np.ndarray]:
        f = SCORES[name]
        p, q = (pos_acts, neg_acts) if name == "soft" else (pos_codes, neg_codes)
        args = () if name == "pair" else (permutations, seed)
        return {role: f(p[:, i], q[:, i], *args).reshape(shape) for i, role in enumerate(roles)}

    chosen = per_role(score)
    best = np.max(np.stack(list(chosen.values())), axis=0)
    end = roles.index("end")
    e = edge_scores(pos_codes[:, end], neg_codes[:, end])
    runtime = time.perf_counter() - t0
    others = {name: np.max(np.stack(list(per_role(name).values())), axis=0) for name in SCORES if name != score}
    result = CodesResult(
        best,
        softmax(best.ravel()).reshape(shape),
        e,
        edge_node_scores(e, model.cfg.n_heads).reshape(shape),
        pos_codes[:, end],
        neg_codes[:, end],
        fit,
        runtime,
        t1 - t0,
        t2 - t1,
        others,
    )
    return result, chosen
