"""Small real models without torch: the first layers of the shipped SmolLM2 GGUF (real weights, real
tokenizer), for tests of machinery (caches, splices, generation) that need a model but not all of it."""

from __future__ import annotations

import dataclasses
import functools

from saelab.models import Model


@functools.lru_cache(maxsize=1)
def _smollm2() -> Model:
    return Model.load("smollm2-135m")


def sliced_smollm2(n_layers: int = 2, **overrides) -> Model:
    """SmolLM2-135M cut to its first `n_layers` blocks; `overrides` change config fields (e.g. a sliding
    window, which exercises the windowed mask on real weights)."""
    full = _smollm2()
    cfg = dataclasses.replace(full.cfg, n_layers=n_layers, **overrides)
    params = full.params._replace(layers=full.params.layers[:n_layers])
    return Model(cfg, params, full.tokenizer, full.special, f"{full.source}[:{n_layers}]", full.weights_hash)
