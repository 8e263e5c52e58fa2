"""Bounded activation sets M for the atoms paper's regime (issue 15): which tokens of a store form M.

The paper trains on a fixed, finite set of activations (CounterFact prompts) and measures on that same set.
Here M is drawn from a store: tokens at window positions >= min_position, one random occurrence per distinct
token id (`dedupe="token"`: an early layer's activation is mostly its token's, so repeats of a token are
near-duplicates that would let a dictionary memorise fewer points than |M| claims), in a random order, and
the sets of the sweep are its prefixes, so each larger M holds every smaller one.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from saelab.store import ActivationStore

Dedupe = Literal["token", "none"]


def candidate_tokens(store: ActivationStore, min_position: int, dedupe: Dedupe, seed: int) -> np.ndarray:
    """Global token indices of the store eligible for M, in a random order (seeded)."""
    pool = np.flatnonzero(np.asarray(store.pos) >= min_position)
    order = np.random.default_rng(seed).permutation(pool)
    if dedupe == "none":
        return order
    if dedupe != "token":
        raise ValueError(f"dedupe must be 'token' or 'none', got {dedupe!r}")
    _, first = np.unique(np.asarray(store.tokens)[order], return_index=True)
    return order[np.sort(first)]  # one random occurrence per token id, still in random order


def nested_sets(order: np.ndarray, sizes: list[int], what: str = "store") -> list[np.ndarray]:
    """The prefixes of `order` of each size, each sorted (store reads are faster in order)."""
    if max(sizes) > len(order):
        raise ValueError(
            f"{what} has {len(order)} eligible tokens, fewer than the largest |M| = {max(sizes)}; harvest more "
            "tokens or lower `sizes`"
        )
    return [np.sort(order[:s]) for s in sizes]
