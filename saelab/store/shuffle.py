"""A keyed pseudo-random permutation of [0, n) evaluated on any index: the global shuffle, O(1) memory.

A 4-round Feistel network over the smallest even-bit power of two >= n, with cycle walking to stay inside
[0, n); each epoch uses a different key. Batch b of the stream is `permute(range(b*B, (b+1)*B) mod n)`, so
a position in the stream (the loader's whole state) fully determines what comes next, and every token is
visited exactly once per epoch whatever the store size, without materialising an n-element permutation.
"""

from __future__ import annotations

import numpy as np

_M = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """splitmix64 finaliser of (x + key): a cheap, well-mixed round function."""
    with np.errstate(over="ignore"):
        z = (x + key) & _M
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M
        return z ^ (z >> np.uint64(31))


def _round_keys(seed: int, epoch: int, rounds: int = 4) -> list[np.uint64]:
    ss = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF, 0x5AE1AB])
    return [np.uint64(k) for k in ss.generate_state(rounds, np.uint64)]


def permute(idx: np.ndarray, n: int, seed: int, epoch: int) -> np.ndarray:
    """The image of `idx` (values in [0, n)) under the permutation of [0, n) for (seed, epoch)."""
    half = max(1, (int(n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    keys = _round_keys(seed, epoch)
    x = np.asarray(idx, np.uint64)
    out = x.copy()
    todo = np.ones(len(x), bool)
    while todo.any():  # cycle walking: re-encrypt values that land outside [0, n)
        v = out[todo]
        left, right = v >> np.uint64(half), v & mask
        for k in keys:
            left, right = right, left ^ (_mix(right, k) & mask)
        v = (left << np.uint64(half)) | right
        out[todo] = v
        todo[todo] = v >= np.uint64(n)
    return out.astype(np.int64)
