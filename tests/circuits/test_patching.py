"""Exact patching, mean ablation and attribution patching on a tiny random Llama (3 layers x 4 heads)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.circuits.codes import head_vectors
from saelab.circuits.metric import logit_diff
from saelab.circuits.patching import attribution_patching, baselines, exact_patching
from saelab.circuits.tasks import TaskData
from saelab.models import Model


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny) -> Model:
    return Model.load(str(tiny(tmp_path_factory.mktemp("tiny"), "llama", initializer_range=0.2)))


@pytest.fixture(scope="module")
def task() -> TaskData:
    """Random prompts; negatives differ at two positions; pair 2 is left-padded by two tokens."""
    rng = np.random.default_rng(0)
    n, s = 6, 10
    pos = rng.integers(1, 97, (n, s)).astype(np.int32)
    neg = pos.copy()
    neg[:, 3:5] = rng.integers(1, 97, (n, 2))
    mask = np.ones((n, s), np.int32)
    mask[2, :2] = 0
    pos[2, :2] = neg[2, :2] = 0
    answer, wrong = rng.integers(1, 97, (2, n)).astype(np.int32)
    targets = {"answer": answer, "wrong": wrong}
    return TaskData("random", pos, neg, mask, "logit_diff", targets, 0, (("", ""),) * n)


def test_patching_a_head_with_itself_changes_nothing(model: Model, task: TaskData) -> None:
    base = baselines(model, task)
    same = exact_patching(model, task._replace(neg=task.pos), base)
    assert np.abs(same.drop).max() < 1e-4 * max(1.0, abs(base.pos))


def test_exact_patching_matches_a_hooked_full_forward(model: Model, task: TaskData) -> None:
    """The vmapped, layer-skipping runner equals a plain forward with one head's z replaced."""
    base = baselines(model, task)
    eff = exact_patching(model, task, base, chunk_tokens=4 * 4 * task.pos.shape[1])  # 4 prompts per call
    _, neg_cache = model.run_with_cache(task.neg, ["blocks.1.attn.hook_z"], pad_mask=task.mask)
    z_neg = neg_cache["blocks.1.attn.hook_z"]
    logits = model.run_with_hooks(
        task.pos, {"blocks.1.attn.hook_z": lambda z: z.at[:, :, 2].set(z_neg[:, :, 2])}, pad_mask=task.mask
    )
    patched = float(logit_diff(logits[:, -2:], {k: jnp.asarray(v) for k, v in task.targets.items()}).mean())
    assert eff.drop[1, 2] == pytest.approx(base.pos - patched, abs=1e-4)
    assert eff.effect[1, 2] == pytest.approx((base.pos - patched) / (base.pos - base.neg), abs=1e-4)
    assert np.abs(eff.drop).max() > 1e-3  # the negatives do differ


def test_mean_ablation_of_a_constant_task_is_identity(model: Model, task: TaskData) -> None:
    one = task._replace(pos=np.repeat(task.pos[:1], 6, 0), neg=np.repeat(task.pos[:1], 6, 0),
                        mask=np.ones_like(task.mask))
    base = baselines(model, one)
    base = base._replace(neg=base.pos - 1.0)  # positives and negatives coincide; any gap normalises
    assert np.abs(exact_patching(model, one, base, "mean").drop).max() < 1e-4


def test_attribution_agrees_with_exact_patching(model: Model, task: TaskData) -> None:
    base = baselines(model, task)
    exact = exact_patching(model, task, base)
    attr = attribution_patching(model, task, base)
    assert attr.effect.shape == (3, 4)
    assert np.corrcoef(exact.drop.ravel(), attr.drop.ravel())[0, 1] > 0.9


def test_head_vectors_are_position_means_of_hook_result(model: Model, task: TaskData) -> None:
    pos, neg = head_vectors(model, task, "all")
    assert pos.shape == neg.shape == (6, 12, 32)
    names = [f"blocks.{i}.attn.hook_result" for i in range(3)]
    _, cache = model.run_with_cache(task.pos, names, pad_mask=task.mask)
    r = np.concatenate([np.asarray(cache[n]) for n in names], axis=2)  # (b, s, 12, d)
    want = r[2, 2:].mean(axis=0)  # pair 2 has two padding tokens
    np.testing.assert_allclose(pos[2], want, rtol=1e-4, atol=1e-5)
    last, _ = head_vectors(model, task, "last")
    np.testing.assert_allclose(last[0], r[0, -1], rtol=1e-4, atol=1e-5)
