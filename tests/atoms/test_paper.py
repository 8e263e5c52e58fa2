"""The atoms paper's regime (issue 15): whitened R^2, S from a separate store, the target-L0 controller, the
per-atom and q* readings on a hand-built case, MLP neurons above a threshold, bounded sets M."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from saelab.atoms.bounded import candidate_tokens, nested_sets
from saelab.atoms.dictionary import thresholded_neurons
from saelab.atoms.fit import FitOptions, fit
from saelab.atoms.metric import metric_from_store
from saelab.atoms.reconstruction import whitened_r2
from saelab.atoms.support import support_coherence
from saelab.atoms.synthetic import make_codes, make_dictionary, synthesize
from saelab.atoms.uniqueness import UniquenessAccumulator
from saelab.sae import ReLUConfig, TopKConfig, encode, sae_config
from saelab.store import ActivationStore, StoreWriter
from saelab.whitening import identity_metric, metric_from_activations, normalise, whiten

HOOK = "blocks.3.hook_resid_post"


def _sqrt_inv(M: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(M)
    return (V / np.sqrt(w)) @ V.T


def test_whitened_r2_matches_numpy():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))
    X = rng.normal(size=(300, 6)) @ A + 3.0  # correlated, with a large mean
    X_hat = X + 0.3 * rng.normal(size=X.shape)
    metric = metric_from_activations(jnp.asarray(X, jnp.float32))
    W = _sqrt_inv(X.T @ X / len(X))  # S^(1/2), S = (E[x x^T])^-1, uncentred
    want = 1 - np.sum(((X - X_hat) @ W) ** 2) / np.sum(((X - X.mean(0)) @ W) ** 2)
    got = whitened_r2(X.astype(np.float32), X_hat.astype(np.float32), metric, block=128)
    assert got.r2 == pytest.approx(want, abs=1e-4)
    raw = 1 - np.sum((X - X_hat) ** 2) / np.sum((X - X.mean(0)) ** 2)
    assert abs(raw - want) > 1e-2  # the whitened value is a different number, not the raw one
    assert whitened_r2(X, X_hat, identity_metric(6)).r2 == pytest.approx(raw, abs=1e-4)


def test_metric_from_a_separate_store_equals_numpy(tmp_path):
    rng = np.random.default_rng(1)
    n, d = 700, 5
    X = (rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 1.5).astype(np.float32)
    pos = np.arange(n) % 50  # windows of 50 tokens
    w = StoreWriter.create_or_resume(
        tmp_path / "metric", meta={"model": "synthetic"}, hooks=[HOOK], d_model=d, dtype="float32", shard_tokens=200
    )
    w.append({HOOK: X}, np.arange(n), np.arange(n) // 50, pos)
    w.finalize()
    metric = metric_from_store(ActivationStore(tmp_path / "metric"), HOOK, tokens=400, min_position=2, batch=64)
    rows = X[pos >= 2][:400].astype(np.float64)
    S = np.linalg.inv(rows.T @ rows / len(rows))
    assert metric.n == 400 and not metric.centred
    np.testing.assert_allclose(np.asarray(metric.S), S, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(metric.whiten), _sqrt_inv(rows.T @ rows / len(rows)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch,target", [("jumprelu", 2.0), ("relu", 6.0)])
def test_target_l0_controller_reaches_its_target(arch, target):
    D = make_dictionary(24, 16, "gaussian", seed=0)
    X = np.asarray(synthesize(D, make_codes(512, 24, 3, seed=1)), np.float32)
    extra = {"jumprelu_init_threshold": 0.05, "bandwidth": 0.02} if arch == "jumprelu" else {}
    cfg = sae_config(architecture=arch, d_in=16, d_sae=48, **extra)
    (res,) = fit(cfg, [X], FitOptions(steps=400, batch=128, lr=3e-3, target_l0=target, init="registry"))
    assert res.l0_trace[:20].mean() > 2 * target  # it starts far from the target ...
    assert res.l0 == pytest.approx(target, rel=0.25)  # ... and ends on it
    l0 = float((np.asarray(encode(res.params, jnp.asarray(X), cfg)) != 0).sum(1).mean())
    assert l0 == pytest.approx(target, rel=0.3)  # the returned parameters (raw inputs) keep it


def test_fit_trains_several_sets_at_once_and_refuses_a_target_for_topk():
    rng = np.random.default_rng(2)
    sets = [rng.normal(size=(n, 8)).astype(np.float32) for n in (16, 40)]
    cfg = ReLUConfig(d_in=8, d_sae=16)
    res = fit(cfg, sets, FitOptions(steps=30, batch=16, lr=1e-9))  # lr ~ 0: the parameters stay at init
    assert len(res) == 2 and all(r.params.W_dec.shape == (16, 8) for r in res)
    assert all(r.l0_trace.shape == (30,) and r.coefficient_scale == 1.0 for r in res)
    # data init: the first min(n, d_sae) decoder rows are distinct rows of the set, centred, at unit norm
    W = np.asarray(res[0].params.W_dec)
    centred = sets[0] - sets[0].mean(0)
    cos = np.abs(W[:16] @ (centred / np.linalg.norm(centred, axis=1, keepdims=True)).T)
    assert np.allclose(np.sort(cos.max(1)), 1.0, atol=1e-4)
    topk = TopKConfig(d_in=8, d_sae=16, k=2)
    with pytest.raises(ValueError, match="target_l0 needs a sparsity coefficient"):
        fit(topk, sets, FitOptions(steps=2, target_l0=2.0))


def test_per_atom_and_q_star_readings_on_a_hand_built_case():
    """Atoms e1, e2, (e1 + e2)/sqrt 2, e3: mu_i = 0.707, 0.707, 0.707, 0. Codes: {3}, {0}, {0, 1}, {0, 3}."""
    r = 1 / np.sqrt(2)
    D = jnp.asarray([[1, 0, 0], [0, 1, 0], [r, r, 0], [0, 0, 1]], jnp.float32)
    Z = jnp.asarray([[0, 0, 0, 1], [1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1]], jnp.float32)
    per_atom = jnp.asarray([r, r, r, 0.0])
    acc = UniquenessAccumulator(per_atom)
    acc.add(Z)
    u = acc.result("all_samples")
    # per-sample reading: mu = [0, .707, .707, .707], K = [1, 1, 2, 2], bound 1/(2K - 1) = [1, 1, 1/3, 1/3]
    np.testing.assert_allclose(np.asarray(u.samples.mu), [0, r, r, r], atol=1e-6)
    assert u.frac_samples_unique == 0.5
    assert u.frac_atoms_unique == 0.0  # atoms 0, 1, 3 each fire in a failing sample; atom 2 never fires
    assert u.n_atoms_fired == 3
    # q*: mu_q = 0.707 * 3q and K_q = 1 up to q = 1/3, then mu_q = .707, K_q = 3q: .707 < 1/(6q - 1) <=> q < 0.4024
    assert u.q_star.q == pytest.approx((1 + np.sqrt(2)) / 6, abs=2e-4)
    # support reading: mu_supp = [0, 0, |<e1, e2>| = 0, |<e1, e3>| = 0] -> every sample unique
    mu_s = support_coherence(normalise(whiten(D, None)), Z, per_atom, max_k=4)
    np.testing.assert_allclose(np.asarray(mu_s), [0, 0, 0, 0], atol=1e-6)
    acc_s = UniquenessAccumulator(per_atom)
    acc_s.add(Z, mu_s)
    us = acc_s.result("all_samples")
    assert us.frac_samples_unique == 1.0 and us.frac_atoms_unique == 1.0 and us.q_star.q == 1.0
    # median_k per-atom reading: atom 3 fires at K = 1 (mu 0 < 1) and K = 2 (0 < 1/3): unique; atom 0 fires at
    # K = 1, 2, 2, lower median 2, .707 > 1/3: not unique; atom 1 fires at K = 2 only: not unique
    assert acc.result("median_k").frac_atoms_unique == pytest.approx(1 / 3)
    assert u.frac_atoms_unique_as("median_k") == pytest.approx(1 / 3) and u.frac_atoms_unique_as("all_samples") == 0


def test_thresholded_mlp_neurons():
    dic = thresholded_neurons(4, 0.1)
    z = np.asarray(dic.encode(jnp.asarray([[1.0, -0.05, 0.5, -0.2], [0.0, 0.0, 0.0, 0.0]])))
    np.testing.assert_allclose(z, [[1.0, 0.0, 0.5, -0.2], [0.0, 0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="threshold must be in"):
        thresholded_neurons(4, 1.5)


def test_bounded_sets_one_token_per_id_nested(tmp_path):
    n = 120
    tokens = np.arange(n) % 30  # 30 distinct ids
    pos = np.arange(n) % 20
    w = StoreWriter.create_or_resume(
        tmp_path / "m", meta={"model": "synthetic"}, hooks=[HOOK], d_model=2, dtype="float32", shard_tokens=60
    )
    w.append({HOOK: np.zeros((n, 2), np.float32)}, tokens, np.arange(n) // 20, pos)
    w.finalize()
    store = ActivationStore(tmp_path / "m")
    order = candidate_tokens(store, 2, "token", seed=0)
    assert len(order) == 30 and len(set(tokens[order])) == 30 and (pos[order] >= 2).all()
    small, big = nested_sets(order, [10, 25])
    assert set(small) <= set(big) and len(big) == 25
    assert len(candidate_tokens(store, 2, "none", seed=0)) == int((pos >= 2).sum())
    with pytest.raises(ValueError, match="fewer than the largest"):
        nested_sets(order, [31])


def test_paper_stage_end_to_end(tmp_path):
    """The atoms-paper stage on tiny synthetic stores: rows for every dictionary, set and |M|, the metric
    named in each row, the markdown's ordering check and the plot."""
    from saelab.atoms.config import AtomsPaperConfig
    from saelab.atoms.paper import run

    D = make_dictionary(12, 8, "gaussian", seed=3)
    for name, n, seed in (("m", 240, 4), ("held", 120, 5), ("metric", 240, 6)):
        X = np.asarray(synthesize(D, make_codes(n, 12, 2, seed=seed)), np.float32)
        w = StoreWriter.create_or_resume(
            tmp_path / name, meta={"model": "synthetic"}, hooks=[HOOK], d_model=8, dtype="float32", shard_tokens=120
        )
        w.append({HOOK: X}, np.arange(n) + 1000 * seed, np.arange(n) // 40, np.arange(n) % 40)  # distinct ids
        w.finalize()
    cfg = AtomsPaperConfig(
        store=tmp_path / "m",
        heldout_store=tmp_path / "held",
        metric_store=tmp_path / "metric",
        sizes=[8, 32],
        multipliers=[1],
        feature_multiplier=1,
        features=["relu"],
        matched_features=["topk"],
        relu_target_l0=3.0,
        steps=20,
        batch=8,
        heldout_tokens=50,
        rip_subsets=0,
        recovery_samples=0,
        angle_pairs=50,
        out=tmp_path / "out",
        progress=False,
    )
    result = run(cfg)
    rows = result["table"]
    assert {(r["kind"], r["set"], r["m_size"]) for r in rows} == {
        (k, s, m) for k in ("atoms", "features", "neurons") for s in ("in-sample", "held-out") for m in (8, 32)
    }
    matched = [r for r in rows if r.get("sparsity") == "matched"]
    assert {r["dictionary"] for r in matched} == {"features (topk, 8, k 2 as the atoms)"} and len(matched) == 4
    assert all(r["l0"] <= 2 + 1e-6 for r in matched)
    assert all(r["metric_source"].startswith(f"separate: {tmp_path / 'metric'}") for r in rows)
    assert {r["n_analysed"] for r in rows if r["set"] == "held-out"} == {50}
    neurons = [r for r in rows if r["kind"] == "neurons"]
    assert all(
        r["r2"] == pytest.approx(1.0, abs=1e-5) and r["r2_whitened"] == pytest.approx(1.0, abs=1e-5) for r in neurons
    )
    md = (tmp_path / "out" / "atoms-paper.md").read_text()
    assert "## in-sample" in md and "## held-out" in md and "atoms > features > neurons" in md
    assert (tmp_path / "out" / "plots" / "phase_transition.png").stat().st_size > 0
    in_sample = run(cfg.model_copy(update={"metric": "in_sample", "plots": False, "out": tmp_path / "out2"}))
    assert {r["metric_source"] for r in in_sample["table"]} == {"in-sample (in-sample)", "in-sample (held-out)"}


def test_ordering_compares_usual_features_and_reports_matched_ones_apart():
    """The paper's ordering uses features at their usual sparsity; features at the atoms' L0 are a control
    reported beside them, never the row that decides the check."""
    from saelab.atoms.paper_report import ordering

    def row(kind, q, u, sparsity=None, samples=None):
        per_atom = {"uniqueness": u, "uniqueness_median_k": u, "uniqueness_samples": u if samples is None else samples}
        return {"kind": kind, "q_star": q, "r2": 0.5, "sparsity": sparsity} | per_atom

    rows = [row("atoms", 0.6, 0.5, "atoms"), row("features", 0.1, 0.2, "usual"), row("neurons", 0.0, 0.0)]
    lines = ordering(rows + [row("features", 0.9, 0.9, "matched")], "in-sample")
    assert "features at the atoms' L0 90.00%" in lines[1]
    assert lines[1].endswith("atoms > features > neurons: yes") and lines[2].endswith("yes")
    tie = [row("atoms", 0.6, 0.5, "atoms"), row("features", 0.1, 0.0, "usual", 0.01), row("neurons", 0.0, 0.0)]
    lines = ordering(tie, "in-sample")
    assert [line.split(":")[0] for line in lines[1:5]] == [
        "- q_star",
        "- uniqueness_samples",
        "- uniqueness",
        "- uniqueness_median_k",
    ]
    assert lines[1].endswith("yes") and lines[2].endswith("yes")  # the per-sample fraction tells them apart
    assert lines[3].endswith("no") and lines[4].endswith("no")  # per atom, 0.0% = 0.0%
