"""Activations shared between SAEs (`EvalConfig.suite_cache`): a second SAE at the same hook reads the prompt
and token-batch activations back without running the model and gets the same numbers; another hook, another
position or other prompts miss."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.evals.config import EvalConfig
from saelab.evals.saebench import act_cache, suite
from saelab.evals.saebench.context import BenchContext
from saelab.runtime.progress import progress_bar
from saelab.sae import ReLUConfig, SAEParams, load_sae, save_saelens
from tests.trace.tiny import VOCAB, D, tiny_llama

HOOK, OTHER_HOOK = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def calls(tiny, monkeypatch) -> list[int]:
    """Counts the model's forward passes that read a hook (every activation pass of the suite)."""
    seen: list[int] = []
    forward = tiny.model.run_with_cache

    def counting(*args, **kwargs):
        seen.append(1)
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny.model, "run_with_cache", counting)
    return seen


def _sae_dir(tiny, tmp_path, seed: int):
    r = np.random.default_rng(seed)
    w = jnp.asarray(r.normal(size=(D, 64)).astype(np.float32) / np.sqrt(D))
    params = SAEParams(w, jnp.full((64,), 0.05), w.T, jnp.zeros(D), None)
    meta = {"hook_name": HOOK, "model_name": str(tiny.path)}
    return save_saelens(tmp_path / f"sae{seed}", params, ReLUConfig(d_in=D, d_sae=64), meta)


def _cfg(tiny, tmp_path, sae_dir, **kw) -> EvalConfig:
    text = tmp_path / "words.txt"
    if not text.exists():
        r = np.random.default_rng(2)
        text.write_text("\n\n".join(" ".join(f"w{i}" for i in r.integers(3, VOCAB, 60)) for _ in range(40)))
    return EvalConfig(
        sae=sae_dir, corpus=f"text:{text}", split="all", tokens=512, context=32, batch=4, progress=False,
        suite="mdl", out=tmp_path / f"{sae_dir.name}.json", suite_cache=tmp_path / "cache", **kw,
    )  # fmt: skip


def _prompt_acts(tiny, cfg, hook: str, ids, position: int = -1) -> np.ndarray:
    with progress_bar("it/s", False) as bar:
        ctx = BenchContext(cfg, load_sae(cfg.sae), str(tiny.path), hook, bar, None, tiny.model)
        return ctx.prompt_acts(ids, position, "prompts")


def test_second_sae_reads_token_activations_back(tiny, tmp_path, calls) -> None:
    """MDL of a second SAE at the same hook: no model pass, and the same numbers as without the cache."""
    first, second = _sae_dir(tiny, tmp_path, 0), _sae_dir(tiny, tmp_path, 1)
    suite.run(_cfg(tiny, tmp_path, first), model=tiny.model)
    assert len(calls) > 0 and len(list((tmp_path / "cache").glob("*.npz"))) == 1
    calls.clear()
    cached = suite.run(_cfg(tiny, tmp_path, second), model=tiny.model)
    assert calls == []
    fresh = suite.run(_cfg(tiny, tmp_path, second, use_suite_cache=False), model=tiny.model)
    assert len(calls) > 0
    assert cached["mdl"]["rows"] == fresh["mdl"]["rows"]
    assert cached["meta"]["activation_cache"] == str(tmp_path / "cache") and fresh["meta"]["activation_cache"] == "off"


def test_prompts_hit_only_with_the_same_hook_position_and_ids(tiny, tmp_path, calls) -> None:
    cfg = _cfg(tiny, tmp_path, _sae_dir(tiny, tmp_path, 0))
    r = np.random.default_rng(3)
    ids = [r.integers(3, VOCAB, n).tolist() for n in (5, 9, 9, 17, 30)]
    want = _prompt_acts(tiny, cfg, HOOK, ids)
    assert len(calls) > 0
    calls.clear()
    np.testing.assert_array_equal(_prompt_acts(tiny, cfg, HOOK, ids), want)
    assert calls == []
    for hook, prompts, position in ((OTHER_HOOK, ids, -1), (HOOK, ids, -2), (HOOK, ids[:4] + [ids[4][:-1]], -1)):
        calls.clear()
        got = _prompt_acts(tiny, cfg, hook, prompts, position)
        assert len(calls) > 0, (hook, position)
        assert not np.array_equal(got, want)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 4


def test_digest_depends_on_every_part_of_the_key_and_the_ids_order() -> None:
    key = act_cache.CacheKey("m", "none", HOOK, None, -1)
    ids = [[1, 2], [3]]
    base = act_cache.digest(key, ids)
    assert act_cache.digest(key, [[1, 2], [3]]) == base
    assert act_cache.digest(key, [[3], [1, 2]]) != base
    assert act_cache.digest(key, [[1], [2, 3]]) != base  # the same ids split differently
    for field, value in (("model", "n"), ("processing", "transformer_lens"), ("head", 2), ("position", "tokens")):
        assert act_cache.digest(key._replace(**{field: value}), ids) != base, field
