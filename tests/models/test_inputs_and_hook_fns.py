"""Model inputs carry their padding mask; TransformerLens's calling conventions; hook functions as data (a loop
of lambdas compiles once). On SmolLM2 cut to two blocks (real weights and tokenizer)."""

from __future__ import annotations

import jax
import jax._src.dispatch as dispatch
import numpy as np
import pytest

from saelab.models import Model
from saelab.models.hook_args import HookPoint
from saelab.models.hook_fns import lift
from tests.models.small import sliced_smollm2

HOOK = "blocks.1.hook_resid_post"
TEXTS = ["The capital of France is Paris, and the capital of Italy", "Hi", "def f(x): return x + 1"]


@pytest.fixture(scope="module")
def model() -> Model:
    return sliced_smollm2(2)


class Compiles:
    """Counts XLA backend compiles (programs built) while active."""

    def __enter__(self):
        self.names: list[str] = []
        self._listener = lambda event, _s, **kw: (
            self.names.append(kw.get("fun_name", "")) if event == dispatch.BACKEND_COMPILE_EVENT else None
        )
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listener)

    def programs(self, name: str = "run") -> int:
        return sum(n == f"jit({name})" for n in self.names)


def test_mixed_length_batch_equals_each_prompt_alone(model) -> None:
    for call in (
        lambda x: model.run_with_cache(x, [HOOK])[1][HOOK],
        lambda x: model.run_with_hooks(x, {HOOK: lambda a: a * 1.5}),
    ):
        batch = np.asarray(call(TEXTS))  # (3, n, ...) left-padded
        for i, text in enumerate(TEXTS):
            alone = np.asarray(call(text))[0]
            n = alone.shape[0]
            np.testing.assert_allclose(batch[i, -n:], alone, rtol=1e-4, atol=1e-4 * np.abs(alone).max())
    toks = model.to_tokens(TEXTS)  # the to_tokens result as it is, and as the (tokens, mask) pair
    a = model.run_with_cache(toks, HOOK)[1][HOOK]
    b = model.run_with_cache(tuple(toks), HOOK)[1][HOOK]
    c = model.run_with_cache(toks.tokens, HOOK, pad_mask=toks.pad_mask)[1][HOOK]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_left_padded_ids_without_their_mask_are_refused(model) -> None:
    toks = model.to_tokens(TEXTS)
    with pytest.raises(ValueError, match=r"row 1 starts with \d+ pad token\(s\) before BOS.*to_tokens"):
        model.run_with_cache(toks.tokens, [HOOK])
    with pytest.raises(ValueError, match="pad token"):
        model.run_with_hooks(toks.tokens, {HOOK: lambda a: a})
    with pytest.raises(ValueError, match="already carries its pad_mask"):
        model.run_with_cache(toks, [HOOK], pad_mask=toks.pad_mask)
    with pytest.raises(ValueError, match="empty prompt"):
        model.run_with_cache("", [HOOK], prepend_bos=False)
    one = model.to_tokens("Hello there").tokens  # an unpadded row runs as it is
    assert model.run_with_cache(one, [HOOK])[1][HOOK].shape[:2] == one.shape


def test_transformerlens_calling_conventions(model) -> None:
    logits, cache = model.run_with_cache("Hello world")  # every hook point, no names given
    assert set(model.hook_names()) <= set(cache) and logits.shape[:2] == (1, 3)
    _, only = model.run_with_cache("Hello world", names_filter=lambda n: n.endswith("hook_resid_post"))
    assert sorted(only) == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    _, one = model.run_with_cache("Hello world", HOOK)  # a single name, not iterated by characters
    assert list(one) == [HOOK]
    seen = []

    def tl_hook(act, hook):
        seen.append(hook.name)
        return act.at[:, -1].set(0.0)

    def none_hook(act, hook):  # TransformerLens hooks may return None: unchanged
        return None

    edited = model.run_with_hooks("Hello world", fwd_hooks=[(HOOK, tl_hook), ("blocks.0.hook_resid_pre", none_hook)])
    expected = model.run_with_hooks("Hello world", {HOOK: lambda a: a.at[:, -1].set(0.0)})
    np.testing.assert_array_equal(np.asarray(edited), np.asarray(expected))
    assert seen == [HOOK]
    assert model.to_str_tokens("Hello world") == ["<|im_start|>", "Hello", " world"]
    assert model.to_str_tokens(["Hi", "Hello world"]) == [["<|im_start|>", "Hi"], ["<|im_start|>", "Hello", " world"]]
    assert model.to_string(model.to_tokens("Hello world", prepend_bos=False).tokens[0]) == "Hello world"
    assert HookPoint("blocks.3.attn.hook_z").layer() == 3


def test_a_loop_of_lambdas_compiles_once_and_each_gets_its_own_values(model) -> None:
    toks = model.to_tokens("The quick brown fox")
    outs = []
    with Compiles() as c:
        for i in range(8):  # i is read from the closure: data, not a new program
            outs.append(
                np.asarray(model.run_with_hooks(toks, fwd_hooks=[(HOOK, lambda act, hook: act.at[..., i].set(9.0))]))  # noqa: B023
            )
    assert c.programs() == 1
    for i, out in enumerate(outs):  # each equals the same edit compiled on its own
        ref = model.run_with_hooks(toks, {HOOK: jax.jit(lambda a, i=i: a.at[..., i].set(9.0))})
        np.testing.assert_allclose(out, np.asarray(ref), rtol=1e-5, atol=1e-5)
    assert not np.allclose(outs[0], outs[1])
    scale = 2.0
    with Compiles() as c:
        for s in (0.5, 1.0, 3.0):  # default arguments and globals are data too
            model.run_with_hooks(toks, {HOOK: lambda a, s=s: a * s * scale})
    assert c.programs() == 1


def test_a_hook_needing_a_concrete_number_still_runs_keyed_by_value(model) -> None:
    toks = model.to_tokens("The quick brown fox")
    outs = []
    for n in (1, 2):  # n is a slice bound: it cannot be traced, so it is keyed by value
        outs.append(np.asarray(model.run_with_hooks(toks, {HOOK: lambda a: a.at[:, :n].set(0.0)})))  # noqa: B023
    ref = model.run_with_hooks(toks, {HOOK: lambda a: a.at[:, :2].set(0.0)})
    np.testing.assert_allclose(outs[1], np.asarray(ref), rtol=1e-6)
    assert not np.allclose(outs[0], outs[1])


def test_lift_splits_code_from_data() -> None:
    def make(i, w):
        return lambda a: a * w + i

    t1, d1, _ = lift(make(1, np.ones(3)))
    t2, d2, _ = lift(make(2, np.zeros(3)))
    assert t1 == t2 and hash(t1) == hash(t2) and d1[0] != d2[0]
    t3, _, _ = lift(lambda a: a * 3)
    assert t3 != t1
    obj1, obj2 = object(), object()
    t4, _, _ = lift(lambda a: (a, obj1)[0])
    t5, _, _ = lift((lambda o: lambda a: (a, o)[0])(obj2))
    assert t4 != t5  # other objects are part of the key, by identity


def test_stop_layer_runs_just_far_enough() -> None:
    from saelab.models.hooks import stop_layer

    assert stop_layer(["hook_embed"], 30) == 1
    assert stop_layer(["blocks.6.hook_resid_post", "blocks.2.attn.hook_pattern"], 30) == 7
    assert stop_layer(["blocks.6.hook_resid_post", "ln_final.hook_normalized"], 30) is None
    assert stop_layer([], 30) is None
