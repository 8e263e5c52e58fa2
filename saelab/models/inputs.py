"""What a model call accepts as its input, resolved to left-padded tokens and the mask that goes with them.

Strings, lists of strings and `Model.to_tokens` results carry their own padding mask, so a batch of prompts of
different lengths can never run with its padding attended to. A raw token array is taken as unpadded unless a
`pad_mask` comes with it, and one whose rows are visibly left-padded (pad ids before the BOS token) without a
mask is refused: run that way, every padded row's activations would be silently wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Tokens(NamedTuple):
    """Left-padded token ids and their mask, as `Model.to_tokens` returns them (unpacks as a pair)."""

    tokens: np.ndarray  # (batch, seq) int32
    pad_mask: np.ndarray  # (batch, seq) int32, 1 for real tokens


def pad_left(ids: Sequence[Sequence[int]], pad_id: int, length: int | None = None) -> Tokens:
    """Rows of token ids left-padded with `pad_id` to the longest row (or to `length`)."""
    n = max(max(len(x) for x in ids), length or 0)
    toks = np.full((len(ids), n), pad_id, np.int32)
    mask = np.zeros((len(ids), n), np.int32)
    for i, x in enumerate(ids):
        if len(x):
            toks[i, n - len(x) :] = x
            mask[i, n - len(x) :] = 1
    return Tokens(toks, mask)


def resolve(model: Any, input: Any, pad_mask: Any = None, prepend_bos: bool = True) -> Tokens:
    """Tokens and mask for a model call's input: a string, a list of strings, a `to_tokens` result (or a
    (tokens, pad_mask) pair), or token ids (batch, seq) / (seq,) with an optional `pad_mask`."""
    if isinstance(input, str) or (isinstance(input, list | tuple) and input and all(isinstance(t, str) for t in input)):
        if pad_mask is not None:
            raise ValueError("pad_mask is for token ids; text input is tokenised and masked by the model itself")
        return model.to_tokens(input, prepend_bos=prepend_bos)
    if isinstance(input, Tokens) or _is_pair(input):
        toks, mask = input
        if pad_mask is not None:
            raise ValueError("the input already carries its pad_mask (a to_tokens result); do not pass pad_mask too")
        return Tokens(np.asarray(toks, np.int32), np.asarray(mask, np.int32))
    if isinstance(input, jax.core.Tracer):  # inside the caller's jit/vmap: nothing concrete to check
        return Tokens(input, jnp.ones(input.shape, jnp.int32) if pad_mask is None else pad_mask)
    toks = np.asarray(input)
    if toks.size == 0:
        raise ValueError("empty input: give at least one token (or a non-empty prompt)")
    if not np.issubdtype(toks.dtype, np.integer):
        raise TypeError(f"token ids must be integers, got dtype {toks.dtype}; pass text, or model.to_tokens(text)")
    if toks.ndim == 1:
        toks = toks[None]
        pad_mask = None if pad_mask is None else np.asarray(pad_mask)[None]
    if toks.ndim != 2:
        raise ValueError(f"token ids must be (batch, seq) or (seq,), got shape {toks.shape}")
    if pad_mask is None:
        _refuse_unmasked_padding(model, toks)
        return Tokens(toks.astype(np.int32), np.ones(toks.shape, np.int32))
    mask = np.asarray(pad_mask)
    if mask.shape != toks.shape:
        raise ValueError(f"pad_mask {mask.shape} must have the shape of the tokens {toks.shape}")
    return Tokens(toks.astype(np.int32), mask.astype(np.int32))


def _is_pair(x: Any) -> bool:
    """A (tokens, pad_mask) tuple as older code unpacked and passed it: two 2-D arrays of one shape, 0/1 mask."""
    if not (isinstance(x, tuple) and len(x) == 2):
        return False
    a, b = (np.asarray(v) for v in x)
    return a.ndim == 2 and a.shape == b.shape and bool(np.isin(b, (0, 1)).all())


def _refuse_unmasked_padding(model: Any, toks: np.ndarray) -> None:
    """Raise when a row holds pad ids before its BOS token (a left-padded batch run without its mask)."""
    bos = getattr(model, "bos_id", None)
    if bos is None or toks.shape[1] < 2:
        return
    pads = set(int(v) for v in model.pad_ids)
    first_bos = np.argmax(toks == bos, axis=1)  # (batch,) 0 when BOS is first or absent
    for row, j in enumerate(first_bos):
        if j > 0 and toks[row, j] == bos and all(int(t) in pads for t in toks[row, :j]):
            raise ValueError(
                f"token row {row} starts with {j} pad token(s) before BOS, and no pad_mask was given: the model "
                "would attend to the padding and every activation of that row would be wrong. Pass the text, "
                "or the `model.to_tokens(texts)` result as it is (it carries the mask), or pad_mask="
            )
