"""Exact patching, mean ablation and attribution patching on a tiny random Llama (3 layers x 4 heads)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.circuits.codes import head_vectors
from saelab.circuits.metric import logit_diff
from saelab.circuits.patching import attribution_patching, baselines, exact_patching, tail_logits
from saelab.circuits.tasks import TaskData
from saelab.models import Model


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
    one = task._replace(
        pos=np.repeat(task.pos[:1], 6, 0), neg=np.repeat(task.pos[:1], 6, 0), mask=np.ones_like(task.mask)
    )
    base = baselines(model, one)
    base = base._replace(neg=base.pos - 1.0)  # positives and negatives coincide; any gap normalises
    assert np.abs(exact_patching(model, one, base, "mean").drop).max() < 1e-4


def test_attribution_is_the_first_order_term_of_exact_patching(model: Model, task: TaskData) -> None:
    """Patch each head part-way, z -> z + eps (z_neg - z): the exact change of the metric minus eps times the
    attribution estimate is the error of a first-order expansion, so it must shrink as eps^2; at eps = 1 the
    part-way patch is exact patching itself."""
    n_layers, n_heads = 3, 4
    names = [f"blocks.{i}.attn.hook_z" for i in range(n_layers)]
    _, neg_cache = model.run_with_cache(task.neg, names, pad_mask=task.mask)
    targets = {k: jnp.asarray(v) for k, v in task.targets.items()}

    def metric(alpha: jax.Array) -> jax.Array:  # alpha: (n_layers, n_heads) patch fraction per head
        hooks = {
            n: (lambda z, a=alpha[i], zn=neg_cache[n]: z + a[None, None, :, None] * (zn - z))
            for i, n in enumerate(names)
        }
        return logit_diff(tail_logits(model.params, model.cfg, task.pos, task.mask, hooks)[0], targets).mean()

    one_head = jnp.eye(n_layers * n_heads).reshape(-1, n_layers, n_heads)
    partial = jax.jit(jax.vmap(lambda eps: jax.vmap(metric)(eps * one_head)))
    eps = jnp.array([0.0, 0.2, 0.1, 0.05, 1.0])
    m = np.asarray(partial(eps), np.float64)  # (eps, heads)
    change = m[1:] - m[:1]  # exact change of the mean metric, per eps and head
    base = baselines(model, task)
    attr = attribution_patching(model, task, base)
    estimate = -attr.drop.ravel()  # first-order change at eps = 1
    exact = exact_patching(model, task, base)
    assert attr.effect.shape == exact.effect.shape == (n_layers, n_heads)
    assert np.corrcoef(exact.drop.ravel(), attr.drop.ravel())[0, 1] > 0.9
    np.testing.assert_allclose(change[3], -exact.drop.ravel(), atol=1e-4)
    err = np.linalg.norm(change[:3] - np.asarray(eps[1:4])[:, None] * estimate, axis=1)
    assert err[0] > 1e-4, "the model is too linear for this test to see the second-order term"
    assert 0.15 < err[1] / err[0] < 0.35 and 0.15 < err[2] / err[1] < 0.35  # halving eps quarters the error
    assert err[2] < 0.1 * 0.05 * np.linalg.norm(estimate)  # within 10% of the first-order term at eps = 0.05


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
