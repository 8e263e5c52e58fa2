"""train.stream.ModelCache: on-the-fly runs' models are loaded once, bounded, and freed by clear()."""

from __future__ import annotations

from saelab.train import stream
from saelab.train.stream import ModelCache


def _counting(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []

    def load(name, dtype):
        calls.append(("load", name, dtype))
        return f"model {name} {dtype}"

    def forward_fn(model, hooks, dtype, batch, interventions):
        calls.append(("compile", model, hooks, batch))
        return lambda tokens: (model, hooks, batch)

    monkeypatch.setattr(stream.Model, "load", staticmethod(lambda name, dtype: load(name, dtype)))
    monkeypatch.setattr(stream, "forward_fn", forward_fn)
    return calls


def test_a_model_and_its_forward_are_made_once(monkeypatch) -> None:
    calls = _counting(monkeypatch)
    cache = ModelCache()
    assert cache.model("m", "float32") is cache.model("m", "float32")
    f = cache.forward("m", "float32", ("blocks.0.hook_resid_post",), 8)
    assert cache.forward("m", "float32", ("blocks.0.hook_resid_post",), 8) is f
    assert calls == [("load", "m", "float32"), ("compile", "model m float32", ("blocks.0.hook_resid_post",), 8)]


def test_the_oldest_model_goes_with_its_forwards_and_clear_frees_all(monkeypatch) -> None:
    calls = _counting(monkeypatch)
    cache = ModelCache(max_models=1)
    cache.forward("a", "float32", ("h",), 8)
    cache.model("b", "float32")  # evicts a and its forward
    assert cache._models.keys() == {("b", "float32")} and not cache._forwards
    cache.model("a", "float32")
    assert [c[1] for c in calls if c[0] == "load"] == ["a", "b", "a"]  # a was loaded again
    cache.clear()
    assert not cache._models and not cache._forwards
    cache.model("a", "float32")
    assert sum(c[0] == "load" for c in calls) == 4  # loaded again after clear()


def test_load_model_goes_through_the_process_cache(monkeypatch) -> None:
    _counting(monkeypatch)
    monkeypatch.setattr(stream, "MODELS", ModelCache())
    assert stream.load_model("x", "bfloat16") is stream.MODELS.model("x", "bfloat16")
