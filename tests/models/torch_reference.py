"""The transformers forward the parity tests compare against: left-padded batches, positions from the mask."""

from __future__ import annotations

import numpy as np


def hf_run(hf, tokens: np.ndarray, mask: np.ndarray, **options):
    """The torch model `hf`'s output on `tokens` (B, T) under the 0/1 `mask` (B, T), hidden states included:
    each row's positions count from its first real token, as saelab's `pad_mask` does. `options` go to the
    forward (e.g. output_attentions=True)."""
    import torch

    pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
    with torch.no_grad():
        return hf(
            input_ids=torch.tensor(tokens, dtype=torch.long),
            attention_mask=torch.tensor(mask),
            position_ids=torch.tensor(pos, dtype=torch.long),
            output_hidden_states=True,
            **options,
        )


def hf_forward(hf, tokens: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(logits, hidden states) of `hf_run`, as NumPy arrays."""
    out = hf_run(hf, tokens, mask)
    return out.logits.numpy(), [h.numpy() for h in out.hidden_states]


def assert_matches(model, hf, tokens: np.ndarray, mask: np.ndarray, hidden_rtol: float, hidden_atol: float = 0.0):
    """saelab's `model` against the torch model `hf` on the same padded batch: logits within 1e-3 of their
    largest magnitude with the same argmax on real tokens, and every block's resid_post within
    `hidden_rtol` (relative to the largest) plus `hidden_atol`."""
    names = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    logits, cache = model.run_with_cache(tokens, names, pad_mask=mask)
    ref, hidden = hf_forward(hf, tokens, mask)
    real = mask.astype(bool)
    ours = np.asarray(logits)
    assert np.abs(ours - ref)[real].max() <= 1e-3 * np.abs(ref[real]).max()
    assert (ours.argmax(-1) == ref.argmax(-1))[real].all()
    # hidden_states[i + 1] is block i's output; transformers' last entry is after the final norm.
    for i in range(model.cfg.n_layers - 1):
        h, h_ref = np.asarray(cache[names[i]])[real], hidden[i + 1][real]
        assert np.abs(h - h_ref).max() <= hidden_rtol * np.abs(h_ref).max() + hidden_atol, f"layer {i}"
