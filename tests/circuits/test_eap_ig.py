"""EAP-IG at head level on a tiny random Llama: one step is attribution patching, the Riemann sum is the
gradient averaged along the embedding path (checked against hooked gradients), and it converges with steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.circuits.metric import logit_diff
from saelab.circuits.patching import attribution_patching, baselines, eap_ig, exact_patching, tail_logits
from saelab.circuits.tasks import TaskData
from saelab.models import Model


def test_one_step_is_attribution_patching(model: Model, task: TaskData) -> None:
    base = baselines(model, task)
    ig, ap = eap_ig(model, task, base, steps=1), attribution_patching(model, task, base)
    assert ig.method == "eap-ig"
    np.testing.assert_allclose(ig.drop, ap.drop, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least one step"):
        eap_ig(model, task, base, steps=0)


def test_steps_average_hooked_gradients_along_the_embedding_path(model: Model, task: TaskData) -> None:
    names = [f"blocks.{i}.attn.hook_z" for i in range(3)]
    embed = "blocks.0.hook_resid_pre"
    _, neg = model.run_with_cache(task.neg, [*names, embed], pad_mask=task.mask)
    _, pos = model.run_with_cache(task.pos, names, pad_mask=task.mask)
    targets = {k: jnp.asarray(v) for k, v in task.targets.items()}

    def metric(deltas, alpha):
        hooks = {n: (lambda z, d=d: z + d) for n, d in zip(names, deltas, strict=True)}
        hooks[embed] = lambda x: (1 - alpha) * x + alpha * neg[embed]
        return logit_diff(tail_logits(model.params, model.cfg, task.pos, task.mask, hooks)[0], targets).mean()

    zeros = [jnp.zeros_like(pos[n]) for n in names]
    want = np.zeros((3, 4))
    grad = jax.jit(jax.grad(metric))
    for alpha in (0.0, 0.25, 0.5, 0.75):
        g = grad(zeros, jnp.float32(alpha))
        want += np.stack([np.einsum("bshd,bshd->h", g[i], neg[n] - pos[n]) for i, n in enumerate(names)]) / 4
    got = eap_ig(model, task, baselines(model, task), steps=4)
    np.testing.assert_allclose(-got.drop, want, rtol=1e-4, atol=1e-6)


def test_many_steps_converge_and_approach_exact_patching_when_nearly_linear(tmp_path, tiny, task: TaskData) -> None:
    """Small weights make the model nearly linear in its head outputs and embeddings, where the path
    integral and per-head patching agree; the Riemann sum must also settle as steps grow."""
    model = Model.load(str(tiny(tmp_path / "lin", "llama", initializer_range=0.02)))
    base = baselines(model, task)
    d = {k: eap_ig(model, task, base, steps=k).drop.ravel() for k in (1, 16, 32)}
    assert np.linalg.norm(d[16] - d[32]) < 0.25 * np.linalg.norm(d[1] - d[32])
    exact = exact_patching(model, task, base).drop.ravel()
    assert np.linalg.norm(d[32] - exact) < 0.15 * np.linalg.norm(exact)  # measured: 0.08
    assert np.corrcoef(exact, d[32])[0, 1] > 0.99


def test_run_scores_eap_ig_and_the_ceiling_on_held_out_prompts(tokenizer, tiny, tmp_path) -> None:
    from saelab.circuits.config import CircuitsConfig
    from saelab.circuits.run import run

    path = tiny(tmp_path / "m", "llama", tokenizer)
    cfg = CircuitsConfig(
        task="ioi", model=str(path), method="attribution", prompts=4, ig_steps=2, progress=False, out=tmp_path / "o"
    )
    res = run(cfg)
    assert {"attribution", "eap-ig"} <= set(res["auc"]) and res["runtime_s"]["eap-ig"] > 0
    assert len(res["scores"]["eap-ig"]) == 12 and "patching-held-out" not in res["auc"]
    held = run(cfg.model_copy(update={"held_out": True, "out": tmp_path / "h"}))
    assert held["ground_truth"] == res["ground_truth"]  # the same ground-truth prompts
    assert "patching-held-out" in held["auc"]  # the ceiling: patching on other prompts
    assert not np.allclose(held["scores"]["attribution"], res["scores"]["attribution"])  # other prompts
