"""Task metrics as pure JAX functions of the logits at the last two positions, and their normalisation.

A patching effect is read against two baselines, the mean metric on positives and on negatives:
normalised = (metric - neg) / (pos - neg), so 1 is clean behaviour and 0 is the negatives' level (the
negative baseline is far from 0 for logit differences: -3.2 on IOI for SmolLM2).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Metric = Callable[[jax.Array, dict[str, jax.Array]], jax.Array]


def logit_diff(logits: jax.Array, t: dict[str, jax.Array]) -> jax.Array:
    """logit(answer) - logit(wrong) at the last position. logits: (n, 2, vocab) -> (n,)."""
    last = logits[:, -1]
    take = jax.vmap(lambda row, i: row[i])
    return take(last, t["answer"]) - take(last, t["wrong"])


def later_digits(logits: jax.Array, t: dict[str, jax.Array]) -> jax.Array:
    """P(two-digit year > start) for digit-level tokenizers: the tens digit from position -2, the units digit
    from position -1 (given the start's tens digit, which the prompt ends with). Probabilities are
    renormalised over the ten digit tokens. -> (n,)"""
    digits = jax.vmap(lambda row, d: row[:, d])(logits, t["digits"])  # (n, 2, 10)
    p = jax.nn.softmax(digits, axis=-1)
    ten = jnp.arange(10)
    tens, units = t["tens"][:, None], t["units"][:, None]
    p_tens_later = jnp.sum(p[:, 0] * (ten > tens), axis=-1)
    p_tens_same = jnp.take_along_axis(p[:, 0], tens, axis=-1)[:, 0]
    p_units_later = jnp.sum(p[:, 1] * (ten > units), axis=-1)
    return p_tens_later + p_tens_same * p_units_later


def later_pairs(logits: jax.Array, t: dict[str, jax.Array]) -> jax.Array:
    """P(year > start) for tokenizers with two-digit tokens (GPT-2), renormalised over 00..99."""
    p = jax.nn.softmax(jax.vmap(lambda row, d: row[d])(logits[:, -1], t["pairs"]), axis=-1)  # (n, 100)
    return jnp.sum(p * (jnp.arange(100) > t["yy"][:, None]), axis=-1)


METRICS: dict[str, Metric] = {
    "logit_diff": logit_diff,
    "later_digits": later_digits,
    "later_pairs": later_pairs,
}
CORRECT_ABOVE = {"logit_diff": 0.0, "later_digits": 0.5, "later_pairs": 0.5}  # a prompt is solved above this


def metric_fn(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(METRICS)}")
    return METRICS[name]


def normalise(value: jax.Array | float, pos: float, neg: float) -> jax.Array | float:
    """(value - neg) / (pos - neg): 1 at the positive baseline, 0 at the negative one."""
    gap = pos - neg
    if abs(gap) < 1e-9:
        raise ValueError(f"positive and negative baselines coincide ({pos:.4g}): the task separates nothing")
    return (value - neg) / gap
