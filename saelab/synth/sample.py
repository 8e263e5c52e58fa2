"""Samples of a SynthSAEBench world: x = a F + b with a the true feature activations (arXiv 2602.14687 sec. 3;
`sae_lens.synthetic.ActivationGenerator.sample` and the hierarchy modifier).

One jitted function draws a whole batch: Gaussian-copula firing (`g = eps F^T + eta sqrt(D)`, fire iff
`g > sqrt(2) erfinv(1 - 2 p)`), magnitudes `relu(mu + sigma xi)`, then per level of the hierarchy the parent
gate (or rescale by a_parent / mu_parent) and the exclusive groups (one active child kept uniformly at random,
SAELens's argmax of uniform scores), then a final relu. Same recipe as SAELens, JAX's random numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp

from saelab.synth.hierarchy import Block, Level
from saelab.synth.world import World, erfinv_threshold


class Sample(NamedTuple):
    hidden: jax.Array  # (batch, d) x = a F + b
    features: jax.Array  # (batch, N) a, the true feature activations


def sampler(world: World, batch: int) -> Callable[[jax.Array], Sample]:
    """A jitted `key -> Sample` of `batch` rows of `world`."""
    levels = world.hierarchy.levels
    arrays = (
        world.features,
        world.bias,
        world.probs,
        world.corr_factor,
        world.corr_diag,
        world.mean_mag,
        world.std_mag,
    )

    @jax.jit
    def draw(arrays, key: jax.Array) -> Sample:
        feats, bias, probs, factor, diag, mean, std = arrays
        a = feature_activations(key, batch, probs, factor, diag, mean, std, levels)
        return Sample(a @ feats + bias, a)

    return lambda key: draw(arrays, key)


def batches(world: World, batch: int, seed: int) -> Iterator[Sample]:
    """Endless batches: batch i uses `fold_in(key(seed), i)`, so any prefix of the stream is reproducible."""
    draw = sampler(world, batch)
    root = jax.random.key(seed)
    i = 0
    while True:
        yield draw(jax.random.fold_in(root, i))
        i += 1


def feature_activations(
    key: jax.Array,
    batch: int,
    probs: jax.Array,
    factor: jax.Array | None,
    diag: jax.Array | None,
    mean: jax.Array,
    std: jax.Array,
    levels: list[Level],
) -> jax.Array:
    """(batch, N) true activations before the dictionary (pure; see the module docstring)."""
    k_eps, k_fire, k_mag, k_me = jax.random.split(key, 4)
    n = probs.shape[0]
    if factor is None:
        fire = jax.random.uniform(k_fire, (batch, n)) < probs  # (batch, N)
    else:
        eps = jax.random.normal(k_eps, (batch, factor.shape[1]))  # (batch, r)
        g = eps @ factor.T + jax.random.normal(k_fire, (batch, n)) * jnp.sqrt(diag)  # (batch, N)
        fire = g > erfinv_threshold(probs)
    xi = jax.random.normal(k_mag, (batch, n))
    a = jnp.where(fire, jax.nn.relu(mean + std * xi), 0.0)  # (batch, N)
    for i, lv in enumerate(levels):
        a = apply_level(a, lv, mean, jax.random.fold_in(k_me, i))
    return jax.nn.relu(a)


def apply_level(a: jax.Array, lv: Level, mean: jax.Array, key: jax.Array, slices: bool = True) -> jax.Array:
    """Gate (or rescale) this level's features by their parents, then resolve its exclusive groups; by
    contiguous slices when the level has a `Block` (and `slices`), else by gathers: the same numbers."""
    if slices and lv.block is not None:
        return _apply_block(a, lv.block, mean, key)
    if len(lv.features):
        parent = a[:, lv.source]  # (batch, N) each gated feature's parent, the feature itself elsewhere
        on = parent > 0
        factor = jnp.where(lv.rescaled, jnp.where(on, parent / mean[lv.source], 0.0), on.astype(a.dtype))
        a = jnp.where(lv.gated, a * factor, a)
    if len(lv.groups):
        valid = lv.groups >= 0  # (g, s)
        sib = jnp.maximum(lv.groups, 0)
        parent_on = jnp.where(lv.group_parents >= 0, a[:, jnp.maximum(lv.group_parents, 0)] > 0, True)  # (batch, g)
        active = (a[:, sib] > 0) & valid & parent_on[:, :, None]  # (batch, g, s)
        keep = _survivors(active, key)  # (batch, g, s)
        keep = jnp.concatenate([keep.reshape(a.shape[0], -1), jnp.ones((a.shape[0], 1), bool)], axis=1)
        a = a * keep[:, lv.slot].astype(a.dtype)  # (batch, N), non-members read the trailing True
    return a


def _apply_block(a: jax.Array, b: Block, mean: jax.Array, key: jax.Array) -> jax.Array:
    batch = a.shape[0]
    if b.n:
        kids = a[:, b.start : b.start + b.n].reshape(batch, -1, b.width)  # (batch, parents, width)
        parent = a[:, b.pstart : b.pstart + b.n // b.width, None]  # (batch, parents, 1)
        on = parent > 0
        p_mean = mean[b.pstart : b.pstart + b.n // b.width, None]
        factor = jnp.where(on, parent / p_mean, 0.0) if b.rescale else on.astype(a.dtype)
        a = a.at[:, b.start : b.start + b.n].set((kids * factor).reshape(batch, b.n))
    if b.n_groups:
        size = b.n_groups * b.gwidth
        kids = a[:, b.gstart : b.gstart + size].reshape(batch, b.n_groups, b.gwidth)  # (batch, g, s)
        parent_on = a[:, b.gpstart : b.gpstart + b.n_groups, None] > 0  # (batch, g, 1)
        keep = _survivors((kids > 0) & parent_on, key)
        a = a.at[:, b.gstart : b.gstart + size].multiply(keep.reshape(batch, size).astype(a.dtype))
    return a


def _survivors(active: jax.Array, key: jax.Array) -> jax.Array:
    """(batch, g, s) keep mask: inactive children, and one active child per group chosen uniformly. One
    uniform per group picks it (the law of SAELens's argmax of one uniform per child, for a quarter of the
    random bits)."""
    count = jnp.sum(active, axis=-1)  # (batch, g)
    pick = jnp.floor(jax.random.uniform(key, count.shape) * count).astype(jnp.int32)  # (batch, g)
    order = jnp.cumsum(active, axis=-1) - 1  # (batch, g, s) rank among the active children
    return ~active | (order == pick[:, :, None])
