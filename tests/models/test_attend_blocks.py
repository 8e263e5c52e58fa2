"""Long sequences attend in causal query blocks (`saelab.models.layers.attend`, `causal=True`): the same
outputs as the full score matrix on every real query (1e-5 of the largest), with left padding and a sliding
window, and a long padded batch through a whole model still matches transformers."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.models import Model
from saelab.models.layers import BLOCKED_FROM, QUERY_BLOCK, attend, attention_mask
from tests.peer_modules import needed


@pytest.mark.parametrize("window", [None, 100])
def test_blocks_equal_the_full_scores(window) -> None:
    r = np.random.default_rng(0)
    b, s, h, kv, d = 2, BLOCKED_FROM + QUERY_BLOCK // 2 + 3, 4, 2, 8  # a last block shorter than the others
    q, k, v = (jnp.asarray(r.normal(size=(b, s, n, d)), jnp.float32) for n in (h, kv, kv))
    pad = np.ones((b, s), np.int32)
    pad[1, :37] = 0  # left padding
    positions = jnp.asarray(np.maximum(np.cumsum(pad, 1) - 1, 0))
    mask = attention_mask(jnp.asarray(pad), positions, window)
    full = np.asarray(attend(q, k, v, mask, 0.3))
    blocked = np.asarray(attend(q, k, v, mask, 0.3, causal=True))
    real = pad.astype(bool)  # a padding query has no key to attend to: its output is not defined
    np.testing.assert_allclose(blocked[real], full[real], atol=1e-5 * np.abs(full).max())


def test_a_long_padded_batch_matches_transformers(tmp_path) -> None:
    torch = needed("torch")
    import transformers

    from tests.models.torch_reference import assert_matches

    cfg = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=97, max_position_embeddings=1024,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path, safe_serialization=True)
    model = Model.load(str(tmp_path))
    tokens = np.random.default_rng(1).integers(0, 97, size=(2, BLOCKED_FROM + 70)).astype(np.int32)
    mask = np.ones_like(tokens)
    mask[1, :90] = 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert_matches(model, hf, tokens, mask, hidden_rtol=1e-4, hidden_atol=1e-5)
