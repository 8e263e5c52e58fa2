"""recipe="paper": each element of O'Neill & Bui's code pinned (loss and gradients against NumPy, init, the
row constraint, prompt counts, IOI negatives, node-from-edge), and the sparse edge count against the dense one."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.circuits import paper
from saelab.circuits.codes import edge_scores, edge_scores_dense, node_scores
from saelab.circuits.config import CircuitsConfig
from saelab.circuits.run import run
from saelab.circuits.tasks import build_task, prefix_ids


def _tiny_sae(seed: int = 0, d: int = 3, latents: int = 4) -> tuple[paper.PaperSAE, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts = (rng.normal(size=(latents, d)), rng.normal(size=latents) * 0.3, rng.normal(size=(d, latents)))
    sae = paper.PaperSAE(*(jnp.asarray(a, jnp.float32) for a in (*parts, rng.normal(size=d) * 0.1)))
    return sae, rng.normal(size=(5, d)).astype(np.float32)


def _numpy_loss_and_grads(sae: paper.PaperSAE, x: np.ndarray, l1: float):
    We, be, Wd, b = (np.asarray(a, np.float64) for a in sae)
    x = x.astype(np.float64)
    n, d = x.shape
    z = (x - b) @ We.T + be
    f = np.maximum(z, 0)
    r = f @ Wd.T + b - x
    loss = (r**2).sum() / (n * d) + l1 * f.sum() / n
    dxhat = 2 * r / (n * d)
    dWd = dxhat.T @ f
    dz = (dxhat @ Wd + l1 / n) * (z > 0)
    dWe = dz.T @ (x - b)
    dbe = dz.sum(0)
    db = dxhat.sum(0) - (dz @ We).sum(0)
    return loss, (dWe, dbe, dWd, db)


def test_loss_and_gradients_match_numpy() -> None:
    sae, x = _tiny_sae()
    loss, (dWe, dbe, dWd, db) = _numpy_loss_and_grads(sae, x, 0.05)
    assert np.isclose(float(paper.loss_fn(sae, jnp.asarray(x), 0.05)), loss, rtol=1e-5)
    g = jax.grad(paper.loss_fn)(sae, jnp.asarray(x), 0.05)
    for got, want in zip(g, (dWe, dbe, dWd, db), strict=True):
        assert np.allclose(got, want, rtol=1e-4, atol=1e-6)


def test_constrained_gradients_renormalise_rows_and_drop_the_parallel_part() -> None:
    sae, x = _tiny_sae(1)
    loss, g = paper.constrained_grads(sae, jnp.asarray(x), 0.02)
    unit = sae._replace(
        W_enc=sae.W_enc / np.linalg.norm(sae.W_enc, axis=1, keepdims=True),
        W_dec=sae.W_dec / np.linalg.norm(sae.W_dec, axis=1, keepdims=True),
    )
    want_loss, (dWe, dbe, dWd, db) = _numpy_loss_and_grads(unit, x, 0.02)
    assert np.isclose(float(loss), want_loss, rtol=1e-5)
    for got, raw, w in ((g.W_enc, dWe, unit.W_enc), (g.W_dec, dWd, unit.W_dec)):
        w = np.asarray(w, np.float64)
        assert np.allclose(got, raw - (raw * w).sum(1, keepdims=True) * w, atol=1e-6)
        assert np.allclose((np.asarray(got) * w).sum(1), 0, atol=1e-6)
    assert np.allclose(g.b_enc, dbe, atol=1e-6) and np.allclose(g.b_pre, db, atol=1e-6)


def test_init_and_training_keep_the_paper_constraints() -> None:
    d = 16
    sae = paper.init_sae(jax.random.PRNGKey(0), d)
    assert sae.W_enc.shape == (200, d) and sae.W_dec.shape == (d, 200)
    assert np.allclose(np.linalg.norm(sae.W_enc, axis=1), 1, atol=1e-6)
    assert np.allclose(np.linalg.norm(sae.W_dec, axis=1), 1, atol=1e-6)  # rows over latents, one per input dim
    assert np.all(sae.b_pre == 0) and np.all(np.abs(sae.b_enc) <= 1 / np.sqrt(d))
    x = np.random.default_rng(0).normal(size=(40, d)).astype(np.float32)
    fit = paper.train_sae(x, 0.02, epochs=50, latents=32)
    assert fit.loss.shape == (50,) and fit.loss[-1] < fit.loss[0]
    assert np.allclose(np.linalg.norm(fit.sae.W_enc, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(fit.sae.W_dec, axis=1), 1, atol=1e-5)
    c = paper.codes(fit.sae, x)
    assert c.shape == (40,) and c.max() < 32  # argmax: no extra "silent" code
    assert (paper.LATENTS, paper.EPOCHS, paper.LR, paper.COUNT_PAIRS, paper.TRAIN_VECTORS) == (200, 500, 1e-3, 250, 10)
    assert paper.L1 == {"ioi": 0.02, "greater-than": 0.02, "docstring": 0.05}


def test_edge_node_counts_keep_top_quarter_of_pairs() -> None:
    e = np.array([[9, 5, 0, 1], [5, 9, 2, 0], [0, 2, 9, 3], [1, 0, 3, 9]])
    # n^2/4 = 4 ordered pairs: (0,1), (1,0) score 5, then (2,3), (3,2) score 3; the diagonal is ignored
    assert paper.edge_node_counts(e).tolist() == [2, 2, 2, 2]
    e2 = e.copy()
    e2[2, 3] = e2[3, 2] = 1
    # now (1,2), (2,1) score 2 come after (0,1), (1,0)
    assert paper.edge_node_counts(e2).tolist() == [2, 4, 2, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_edge_count_equals_dense(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = [2, 5, 40][seed]
    pos, neg = rng.integers(0, k, (30, 7)), rng.integers(0, k, (25, 7))
    e = edge_scores(pos, neg)
    assert np.array_equal(e, edge_scores_dense(pos, neg))
    assert np.array_equal(np.diag(e), node_scores(pos, neg)) and np.array_equal(e, e.T)


def test_ioi_paper_negative_replaces_only_the_first_subject_mention(tokenizer) -> None:
    pre = prefix_ids(tokenizer)
    abc = build_task("ioi", tokenizer, 8, 0, prefix=pre)
    t = build_task("ioi", tokenizer, 8, 0, prefix=pre, ioi_negative="paper")
    assert np.array_equal(t.pos, abc.pos)  # same positives: the negative is the only change
    for i in range(8):
        m = t.mask[i] == 1
        p, q = t.pos[i, m], t.neg[i, m]
        diff = np.nonzero(p != q)[0]
        assert len(diff) == 1  # one token: the subject's first mention
        s = int(t.targets["wrong"][i])
        io = int(t.targets["answer"][i])
        assert p[diff[0]] == s and (p == s).sum() == 2  # in the positive it was S1, S repeats once (S2)
        assert (q == s).sum() == 1 and (q == io).sum() == 1  # the negative keeps IO and names nobody twice
        assert q[diff[0]] not in (s, io)
    with pytest.raises(ValueError, match="ioi_negative"):
        build_task("ioi", tokenizer, 2, 0, ioi_negative="both")


def test_paper_recipe_end_to_end_counts_250_pairs_and_trains_on_10(tokenizer, tiny, tmp_path, monkeypatch) -> None:
    path = tiny(tmp_path / "m", "llama", tokenizer)
    seen = {}
    train = paper.train_sae

    def spy(x, l1, **kw):
        seen["x"], seen["l1"] = x.shape, l1
        return train(x, l1, **kw)

    monkeypatch.setattr(paper, "train_sae", spy)
    cfg = CircuitsConfig(
        task="ioi",
        model=str(path),
        method="sae-codes",
        recipe="paper",
        ground_truth="none",
        prompts=4,
        progress=False,
        out=tmp_path / "o",
    )
    res = run(cfg)
    assert seen["x"] == (10 * 12, 32) and seen["l1"] == 0.02  # 10 prompts x 12 heads, d_model 32
    saved = json.loads((tmp_path / "o" / "circuits.json").read_text())
    assert len(saved["scores"]["sae-codes"]) == 12 and len(res["scores"]["sae-codes-edges"]) == 12
    assert saved["config"]["recipe"] == "paper" and saved["config"]["count_prompts"] == 250
    assert saved["sae_codes"]["counted_pairs"] == 250
