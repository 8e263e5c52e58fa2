"""The hierarchy of a SynthSAEBench world (arXiv 2602.14687 sec. 3.2; `sae_lens.synthetic.hierarchy`) as arrays.

A forest is kept in SAELens's own JSON form (`hierarchy.json`: nested nodes with `feature_index`,
`mutually_exclusive_children`, `scale_children_by_parent`, `children`), so a SAELens-saved world loads as is.
`Hierarchy` flattens it into per-level index arrays that the sampler applies with a static loop over levels
(3 for SynthSAEBench): level l gates (or rescales) its features by their parents, then resolves the mutually
exclusive groups whose parent sits at level l, before level l + 1 is gated, as SAELens's modifier does.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, NamedTuple

import numpy as np

from saelab.synth.config import WorldConfig

Node = dict[str, Any]  # one node of SAELens's hierarchy.json


class Level(NamedTuple):
    """Features gated at one level and the exclusive groups resolved right after, as gathers over all N
    columns (a column gather is cheap on every backend; a column scatter is not on a CPU)."""

    features: np.ndarray  # (n,) int32 features of this level that have a parent
    parents: np.ndarray  # (n,) int32 their nearest ancestor with a feature
    rescale: np.ndarray  # (n,) bool: scaled by a_parent / mu_parent (else a 0/1 gate)
    groups: np.ndarray  # (g, s) int32 siblings of each exclusive group, -1 padded
    group_parents: np.ndarray  # (g,) int32 the group's parent feature, -1 for none (always active)
    source: np.ndarray  # (N,) int32 the parent of each gated feature, the feature itself elsewhere
    gated: np.ndarray  # (N,) bool: gated at this level
    rescaled: np.ndarray  # (N,) bool: gated by rescaling
    slot: np.ndarray  # (N,) int32 position in groups.ravel() of a group member, g * s for the others
    block: Block | None = None  # the same level as contiguous slices, when the forest is laid out breadth-first


class Block(NamedTuple):
    """A level whose gated features are the contiguous range [start, start + n), children of [pstart, ...) in
    runs of `width` siblings, and whose exclusive groups (if any) are the runs of the range [gstart, ...) under
    [gpstart, ...) (SAELens's generated forests; the slices replace the gathers)."""

    start: int
    n: int
    pstart: int
    width: int
    rescale: bool
    gstart: int
    n_groups: int
    gwidth: int
    gpstart: int


class Hierarchy(NamedTuple):
    roots: list[Node]  # the forest, as hierarchy.json holds it
    levels: list[Level]  # gating and exclusion, level 0 (roots: exclusion only) first

    @property
    def empty(self) -> bool:
        return not self.roots


def generate_forest(cfg: WorldConfig) -> list[Node]:
    """SAELens's `generate_hierarchy`: complete trees, features handed out breadth-first over the forest (all
    roots, then every root's children, ...), exclusive parents drawn with Python's `random.Random(seed + 3)`
    exactly as SAELens draws them, so the forest equals SAELens's for the same config."""
    if cfg.hierarchy_roots == 0:
        return []
    rng = random.Random(cfg.seed + 3)
    n = cfg.num_features
    roots = [_node(i) for i in range(min(cfg.hierarchy_roots, n))]
    parents = [(r, 0) for r in roots]
    frontier, nxt = list(parents), len(roots)
    while frontier:
        below: list[tuple[Node, int]] = []
        for node, depth in frontier:
            if depth >= cfg.depth:
                continue
            for _ in range(cfg.branching):
                if nxt >= n:
                    break
                child = _node(nxt)
                nxt += 1
                node["children"].append(child)
                if depth + 1 < cfg.depth:
                    below.append((child, depth + 1))
                    parents.append((child, depth + 1))
        frontier = below
    eligible = [node for node, _ in parents if len(node["children"]) >= 2]
    k = int(len(eligible) * cfg.exclusive_portion)
    for i in rng.sample(range(len(eligible)), k) if k else ():
        eligible[i]["mutually_exclusive_children"] = True
    if cfg.scale_children_by_parent:
        for node, _ in parents:
            node["scale_children_by_parent"] = True
    return roots


def build(roots: list[Node], num_features: int) -> Hierarchy:
    """Flatten a forest over `num_features` features into per-level arrays (a breadth-first walk, as SAELens's
    `_build_sparse_hierarchy`)."""
    feats: list[tuple[int, int, int, bool]] = []  # (feature, effective parent, level, rescaled)
    groups: list[tuple[int, int, list[int]]] = []  # (parent level, parent feature, siblings)
    queue = deque((r, -1, 0, False) for r in roots)
    while queue:
        node, parent, level, rescaled = queue.popleft()
        f = node.get("feature_index")
        if f is not None:
            feats.append((f, parent, level, rescaled))
        children = node.get("children", [])
        sibs = [c["feature_index"] for c in children if c.get("feature_index") is not None]
        if node.get("mutually_exclusive_children") and len(sibs) >= 2:
            groups.append((level, -1 if f is None else f, sibs))
        own = bool(node.get("scale_children_by_parent"))
        queue.extend((c, parent if f is None else f, level + 1, own) for c in children)
    top = max([lv for _, _, lv, _ in feats] + [lv for lv, _, _ in groups], default=-1)
    levels = []
    for lv in range(top + 1):
        here = [(f, p, r) for f, p, level, r in feats if level == lv and p >= 0]
        mine = [(p, s) for level, p, s in groups if level == lv]
        width = max((len(s) for _, s in mine), default=0)
        features = np.array([f for f, _, _ in here], np.int32)
        parents = np.array([p for _, p, _ in here], np.int32)
        rescale = np.array([r for _, _, r in here], bool)
        grp = np.array([s + [-1] * (width - len(s)) for _, s in mine], np.int32).reshape(len(mine), width)
        source = np.arange(num_features, dtype=np.int32)
        gated, rescaled = np.zeros(num_features, bool), np.zeros(num_features, bool)
        source[features], gated[features], rescaled[features] = parents, True, rescale
        slot = np.full(num_features, grp.size, np.int32)
        flat = grp.ravel()
        slot[flat[flat >= 0]] = np.flatnonzero(flat >= 0)
        group_parents = np.array([p for p, _ in mine], np.int32)
        level = Level(features, parents, rescale, grp, group_parents, source, gated, rescaled, slot)
        levels.append(level._replace(block=_block(level)))
    return Hierarchy(roots, levels)


def _block(lv: Level) -> Block | None:
    """The level's `Block` when its features and groups are contiguous runs, else None."""
    n, (g, w) = len(lv.features), lv.groups.shape
    n_parents = len(np.unique(lv.parents)) if n else 1
    if n % n_parents:
        return None
    width = n // n_parents
    start, pstart = (int(lv.features[0]), int(lv.parents[0])) if n else (0, 0)
    runs = lambda idx, first, size: np.array_equal(idx, first + np.arange(len(idx)) // size)
    if n and not (
        runs(lv.features, start, 1) and runs(lv.parents, pstart, width) and len(set(lv.rescale.tolist())) == 1
    ):
        return None
    gstart, gpstart = (int(lv.groups[0, 0]), int(lv.group_parents[0])) if g else (0, 0)
    if g and not ((lv.groups >= 0).all() and runs(lv.groups.ravel(), gstart, 1) and runs(lv.group_parents, gpstart, 1)):
        return None
    if g and gpstart < 0:
        return None
    return Block(start, n, pstart, width, bool(n and lv.rescale[0]), gstart, g, w, gpstart)


def compensation(h: Hierarchy, p: np.ndarray) -> np.ndarray:
    """(N,) factors that keep each feature's marginal rate near its base p (SAELens's
    `compute_probability_correction_factors`): 1 / p_parent for a child, times 1 + (sum of its exclusive
    siblings' p) / p_parent in an exclusive group; 1 outside the forest."""
    p64 = p.astype(np.float64)
    factor = np.ones(len(p), np.float64)
    for lv in h.levels:
        factor[lv.features] = 1.0 / p64[lv.parents]
    for lv in h.levels:
        if len(lv.groups) == 0:
            continue
        valid = lv.groups >= 0  # (g, s)
        sib_p = np.where(valid, p64[np.maximum(lv.groups, 0)], 0.0)
        parent_p = np.where(lv.group_parents >= 0, p64[np.maximum(lv.group_parents, 0)], 1.0)[:, None]
        me = 1.0 + np.maximum(0.0, sib_p.sum(1, keepdims=True) - sib_p) / parent_p  # (g, s)
        np.multiply.at(factor, lv.groups[valid], me[valid])
    return factor


def _node(index: int) -> Node:
    return {
        "feature_index": index,
        "mutually_exclusive_children": False,
        "scale_children_by_parent": False,
        "feature_id": None,
        "children": [],
    }
