"""KV-cache generation against full forwards, sampling per seed, stop tokens, hooks at every step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.models import HookContext, Model, forward
from saelab.models.generate import Sampling, generate, next_token
from tests.models.small import sliced_smollm2
from tests.peer_modules import needed

VOCAB = 97  # prompt ids are drawn below this, valid for every model here


N_NEW = 8  # one length everywhere: tests of one family share compiled loops


@pytest.fixture(
    scope="module",
    params=[
        "smollm2-2-layers",
        "smollm2-window-3",
        "gemma2",
        "gpt2",
        "qwen2-sliding-untied",
        "qwen3",
        "gemma3",
        "pythia-parallel",
    ],
)
def family(request, tmp_path_factory) -> Model:
    """Every family and mask the cache must get right: Llama (SmolLM2's first blocks, real weights), a sliding
    window (the same blocks with a 3-token window), Gemma 2 (local/global layers, soft-capping), GPT-2,
    Qwen2 (biases, windowed upper layers), Qwen3 (q/k norm), Gemma 3 (q/k norm, two rope bases) and Pythia
    (parallel residual, partial rotary)."""
    if request.param == "smollm2-2-layers":
        return sliced_smollm2(2)
    if request.param == "smollm2-window-3":
        return sliced_smollm2(2, sliding_window=3)
    # The other families have no shipped checkpoint: transformers writes random ones, and it needs torch.
    needed("torch")
    from tests.models.test_parity import _save

    path = tmp_path_factory.mktemp(request.param)
    _save(request.param, path)
    return Model.load(str(path))


@pytest.fixture(scope="module")
def small() -> Model:
    return sliced_smollm2(2)


def prompts() -> tuple[np.ndarray, np.ndarray]:
    """Two left-padded prompts of lengths 7 and 4 (random ids)."""
    rng = np.random.default_rng(0)
    toks = rng.integers(1, VOCAB, size=(2, 7)).astype(np.int32)
    mask = np.ones_like(toks)
    toks[1, :3], mask[1, :3] = 0, 0
    return toks, mask


def greedy_uncached(model: Model, toks: np.ndarray, mask: np.ndarray, n: int, hooks=None) -> np.ndarray:
    """The reference: a full forward over prompt + generated tokens for every new token (the buffer is
    right-padded to its final length, which changes no earlier causal logit, so it compiles once)."""
    b, p = toks.shape
    buf = np.concatenate([toks, np.zeros((b, n), np.int32)], 1)
    buf_mask = np.concatenate([mask, np.zeros((b, n), np.int32)], 1)
    fwd = jax.jit(lambda t, m: forward(model.params, model.cfg, t, m, HookContext(hooks=hooks or {})).logits)
    for i in range(n):
        logits = fwd(jnp.asarray(buf), jnp.asarray(buf_mask))
        buf[:, p + i] = np.asarray(jnp.argmax(logits[:, p + i - 1], -1))
        buf_mask[:, p + i] = 1
    return buf[:, p:]


def test_cached_greedy_equals_uncached_token_for_token(family: Model) -> None:
    toks, mask = prompts()
    got = generate(family.params, family.cfg, jnp.asarray(toks), jnp.asarray(mask), N_NEW)
    np.testing.assert_array_equal(np.asarray(got.tokens), greedy_uncached(family, toks, mask, N_NEW))
    assert np.asarray(got.lengths).tolist() == [N_NEW, N_NEW]


def _shift(x: jax.Array) -> jax.Array:
    return x + 3.0 * jnp.sin(jnp.arange(x.shape[-1], dtype=x.dtype))


def test_hooks_apply_at_every_generated_step(small: Model) -> None:
    toks, mask = prompts()
    hook = {"blocks.1.hook_resid_post": _shift}
    got = generate(small.params, small.cfg, jnp.asarray(toks), jnp.asarray(mask), N_NEW, hooks=hook)
    ref = greedy_uncached(small, toks, mask, N_NEW, hooks=hook)
    np.testing.assert_array_equal(np.asarray(got.tokens), ref)
    assert not np.array_equal(ref, greedy_uncached(small, toks, mask, N_NEW))


def test_sampling_reproducible_per_seed_and_filters(small: Model) -> None:
    toks, mask = prompts()
    run = lambda seed, s: np.asarray(generate(small.params, small.cfg, toks, mask, N_NEW, sampling=s, seed=seed).tokens)
    hot = Sampling(temperature=2.0)
    np.testing.assert_array_equal(run(3, hot), run(3, hot))
    assert not np.array_equal(run(3, hot), run(4, hot))
    greedy = run(0, Sampling())
    np.testing.assert_array_equal(run(5, Sampling(temperature=1.5, top_k=1)), greedy)
    np.testing.assert_array_equal(run(6, Sampling(temperature=1.5, top_p=1e-6)), greedy)


def test_greedy_is_argmax() -> None:
    logits = jnp.asarray([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0]])
    assert next_token(logits, Sampling(), jax.random.key(0)).tolist() == [1, 0]


def test_stop_ids_mask_the_rest(small: Model) -> None:
    toks, mask = prompts()
    free = np.asarray(generate(small.params, small.cfg, toks, mask, N_NEW).tokens)
    stop = int(free[0, 2])
    got = generate(small.params, small.cfg, toks, mask, N_NEW, stop_ids=(stop,), pad_id=-1)
    row = np.asarray(got.tokens)[0]
    first = int(np.argmax(free[0] == stop))
    assert int(got.lengths[0]) == first + 1
    np.testing.assert_array_equal(row[: first + 1], free[0, : first + 1])
    assert (row[first + 1 :] == -1).all()


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    """Probabilities 0.5, 0.3, 0.2: top_p 0.6 keeps the first two tokens, never the third."""
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.2]]))
    seen = {int(next_token(logits, Sampling(1.0, None, 0.6), jax.random.key(i))[0]) for i in range(200)}
    assert seen == {0, 1}


def test_bad_sampling_settings_are_named() -> None:
    with pytest.raises(ValueError, match="top_p"):
        Sampling(1.0, None, 1.5).check(10)
    with pytest.raises(ValueError, match="temperature"):
        Sampling(-1.0).check(10)
