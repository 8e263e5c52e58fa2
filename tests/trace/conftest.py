"""Fixtures of the trace tests: the tiny random Llama and one traced prompt through each kind of random
transcoders (a per-layer set with skips, and a CLT), one of each per test module."""

from __future__ import annotations

import pytest

from saelab.trace import attribute, qk
from tests.trace import tiny


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny.tiny_llama(tmp_path_factory.mktemp("tiny")).model


@pytest.fixture(scope="module", params=["plt", "clt"])
def traced(request, model):
    """(transcoders, the unpruned graph of 11 random tokens, qk's prepared state)."""
    tc = tiny.transcoder_set(request.param)
    graph = attribute(model, tc, tiny.tokens(seed=7, n=11), batch_size=64)
    return tc, graph, qk.prepare(model, tc, graph)
