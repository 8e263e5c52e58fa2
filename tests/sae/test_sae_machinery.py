"""Init, geometric median, unit-norm decoder, input-scaling folding, BatchTopK cut-off, registry, config."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from saelab.sae import (
    ARCHITECTURES,
    Architecture,
    AuxKConfig,
    BatchTopKConfig,
    JumpReLUConfig,
    LossOutput,
    MatryoshkaConfig,
    ReLUConfig,
    SAEConfig,
    SAEParams,
    TopKConfig,
    fold_input_scaling,
    geometric_median,
    get_architecture,
    init_params,
    input_scale,
    load_saelens,
    normalise_decoder,
    register,
    remove_parallel_grad,
    sae_config,
    save_saelens,
    unit_norm_decoder,
)
from saelab.sae import batchtopk as btk

D_IN, D_SAE = 6, 16
# the single-layer SAEs: the CLT has its own parameter layout and loss (Architecture.own_loss; tests/sae/test_clt.py)
SAES = sorted(n for n, a in ARCHITECTURES.items() if a.own_loss is None)


def test_init_is_tied_with_short_decoder_rows() -> None:
    cfg = JumpReLUConfig(d_in=D_IN, d_sae=D_SAE, dec_init_norm=0.1)
    b_dec = jnp.arange(D_IN, dtype=jnp.float32)
    p = init_params(jax.random.PRNGKey(0), cfg, b_dec=b_dec)
    np.testing.assert_allclose(np.linalg.norm(p.W_dec, axis=1), 0.1, rtol=1e-5)
    np.testing.assert_array_equal(p.W_enc, p.W_dec.T)
    assert float(jnp.abs(p.b_enc).max()) == 0.0 and np.array_equal(p.b_dec, b_dec)
    assert p.threshold.dtype == jnp.float32
    np.testing.assert_array_equal(p.threshold, np.float32(cfg.jumprelu_init_threshold))
    topk_cfg = TopKConfig(d_in=D_IN, d_sae=D_SAE, k=3, dec_init_norm=0.1)
    assert init_params(jax.random.PRNGKey(0), topk_cfg).threshold is None
    with pytest.raises(ValueError, match="b_dec must have shape"):
        init_params(jax.random.PRNGKey(0), cfg, b_dec=jnp.zeros(3))


def test_geometric_median_of_collinear_points_is_the_middle_one() -> None:
    c, u = np.array([1.0, -2.0, 3.0]), np.array([0.6, 0.0, 0.8])
    pts = c + np.array([-1.0, -0.5, 0.0, 2.0, 50.0])[:, None] * u  # mean is far from c
    np.testing.assert_allclose(geometric_median(jnp.asarray(pts, jnp.float32)), c, atol=1e-3)


def test_geometric_median_minimises_the_sum_of_distances() -> None:
    pts = np.random.default_rng(0).standard_cauchy(size=(200, 4))  # heavy tails: median != mean
    y = np.asarray(geometric_median(jnp.asarray(pts, jnp.float32)), np.float64)
    cost = lambda z: np.linalg.norm(pts - z, axis=1).sum()
    for step in np.random.default_rng(1).normal(size=(20, 4)) * 1e-2:
        assert cost(y) <= cost(y + step) + 1e-6
    assert cost(y) < cost(pts.mean(0))


def test_remove_parallel_grad_makes_grad_orthogonal_to_rows() -> None:
    r = np.random.default_rng(0)
    W, g = jnp.asarray(r.normal(size=(D_SAE, D_IN)), jnp.float32), jnp.asarray(r.normal(size=(D_SAE, D_IN)))
    out = remove_parallel_grad(W, g)
    np.testing.assert_allclose(np.sum(np.asarray(out) * np.asarray(W), axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(normalise_decoder(W), axis=1), 1.0, rtol=1e-6)


def test_unit_norm_decoder_optimiser_keeps_rows_unit_norm() -> None:
    cfg = TopKConfig(d_in=D_IN, d_sae=D_SAE, k=3, dec_init_norm=1.0)
    params = init_params(jax.random.PRNGKey(0), cfg)
    tx = unit_norm_decoder(optax.adam(1e-1))
    state = tx.init(params)
    x = jax.random.normal(jax.random.PRNGKey(1), (8, D_IN))

    @jax.jit
    def step(params, state):
        grads = jax.grad(lambda p: get_architecture("topk").loss(p, x, cfg)[0])(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(3):
        params, state = step(params, state)
    np.testing.assert_allclose(np.linalg.norm(params.W_dec, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("mode", ["codes", "weights"])
@pytest.mark.parametrize("arch", SAES)
def test_fold_input_scaling_is_equivalent(arch: str, mode: str) -> None:
    k = {"k": 3} if "k" in get_architecture(arch).config.model_fields else {}
    cfg = sae_config(architecture=arch, d_in=D_IN, d_sae=D_SAE, **k)
    r = np.random.default_rng(0)
    p = init_params(jax.random.PRNGKey(0), cfg, b_dec=jnp.asarray(r.normal(size=D_IN), jnp.float32))
    p = p._replace(b_enc=jnp.asarray(r.normal(size=D_SAE) * 0.05, jnp.float32))
    if p.threshold is not None:
        p = p._replace(threshold=jnp.full((D_SAE,), 0.02, jnp.float32))
    x_raw = jnp.asarray(r.normal(size=(64, D_IN)) * 7.0, jnp.float32)
    s = float(input_scale(x_raw, "unit"))
    np.testing.assert_allclose(np.mean(np.sum(np.asarray(x_raw * s) ** 2, 1)), 1.0, rtol=1e-5)
    a = get_architecture(arch)
    codes_scaled = a.encode(p, x_raw * s, cfg)
    want = a.decode(p, codes_scaled) / s
    folded = fold_input_scaling(p, s, mode)
    codes_raw = a.encode(folded, x_raw, cfg)
    assert float((codes_scaled > 0).sum()) > 0
    np.testing.assert_array_equal(np.asarray(codes_raw) > 0, np.asarray(codes_scaled) > 0)
    np.testing.assert_allclose(a.decode(folded, codes_raw), want, rtol=1e-4, atol=1e-4)


def test_batch_topk_cutoff_is_exact_including_the_fallback() -> None:
    r = np.random.default_rng(0)
    acts = r.exponential(size=(16, 40)).astype(np.float32)
    acts[3] += 10.0  # one token holds more than 2k of the batch's top k * batch: candidates are not enough
    for a in (acts, r.exponential(size=(16, 40)).astype(np.float32)):
        got = np.asarray(jax.jit(btk.batch_topk, static_argnums=1)(jnp.asarray(a), 3))
        cut = np.sort(a.ravel())[::-1][3 * 16 - 1]
        np.testing.assert_array_equal(got, np.where(a >= cut, a, 0))
        assert (got > 0).sum() == 3 * 16


def test_batchtopk_threshold_ema_and_inference_encode() -> None:
    cfg = BatchTopKConfig(d_in=D_IN, d_sae=D_SAE, k=3, threshold_ema_rate=0.5)
    p = init_params(jax.random.PRNGKey(0), cfg)._replace(threshold=jnp.full((D_SAE,), 0.2, jnp.float32))
    out = LossOutput(*([jnp.float32(0)] * 8), batch_threshold=jnp.float32(0.4), prefix_mse=jnp.zeros(1))
    np.testing.assert_allclose(btk.update_threshold(p, out, cfg).threshold, 0.3, rtol=1e-6)
    kept = btk.update_threshold(p, out._replace(batch_threshold=jnp.float32(jnp.nan)), cfg)
    np.testing.assert_allclose(kept.threshold, 0.2)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, D_IN))
    pre = (x - p.b_dec) @ p.W_enc + p.b_enc
    np.testing.assert_allclose(btk.encode(p, x, cfg), np.where(pre > 0.2, pre, 0), rtol=1e-6)


def test_registry_lookup() -> None:
    assert set(ARCHITECTURES) == {"relu", "topk", "batchtopk", "jumprelu", "matryoshka", "clt"}
    with pytest.raises(ValueError, match="unknown SAE architecture 'gated'"):
        get_architecture("gated")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"k": 17}, "k must be in"),
        ({"k": 0}, "k must be in"),
        ({"k_aux": 99}, "k_aux must be in"),
        ({"architecture": "relu", "l1_coefficient": -1.0}, "l1_coefficient must be >= 0"),
        ({"aux_coefficient": -0.1}, "aux_coefficient must be >= 0"),
        ({"architecture": "jumprelu", "l0_coefficient": -1e-3}, "l0_coefficient must be >= 0"),
        ({"architecture": "jumprelu", "bandwidth": 0.0}, "bandwidth must be > 0"),
        ({"architecture": "jumprelu", "jumprelu_init_threshold": -1.0}, "jumprelu_init_threshold must be >= 0"),
        ({"architecture": "matryoshka", "matryoshka_prefixes": (4, 2, 16)}, "strictly increasing"),
        ({"architecture": "matryoshka", "matryoshka_prefixes": (2, 4, 8)}, "must end at d_sae=16"),
        ({"architecture": "matryoshka", "matryoshka_prefixes": (0, 16)}, "must be positive"),
        ({"d_sae": 0}, "must be positive"),
        ({"architecture": "gated"}, "architecture"),
        ({"typo_field": 1}, "typo_field"),
        ({"architecture": "batchtopk", "threshold_ema_rate": 0.0}, "threshold_ema_rate"),
        ({"architecture": "matryoshka", "threshold_ema_rate": 1.5}, "threshold_ema_rate"),
        ({"architecture": "relu", "d_out": 4, "apply_b_dec_to_input": True}, "apply_b_dec_to_input"),
        ({"dec_init_norm": 0.0}, "dec_init_norm must be > 0"),
    ],
)
def test_config_rejects_impossible_values(fields: dict, message: str) -> None:
    data = {"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, **fields}
    if data["architecture"] in ARCHITECTURES and "k" in get_architecture(data["architecture"]).config.model_fields:
        data.setdefault("k", 3)
    with pytest.raises(ValueError, match=message):
        sae_config(data)


def test_config_defaults_resolve() -> None:
    cfg = MatryoshkaConfig(d_in=576, d_sae=4608)
    assert cfg.resolved_prefixes == (576, 1152, 2304, 4608) and cfg.resolved_k_aux == 288
    assert cfg.uses_threshold
    assert TopKConfig(d_in=8, d_sae=4, k=2).resolved_k_aux == 4  # capped at d_sae


def test_a_config_class_per_architecture_and_one_validator_for_dicts() -> None:
    topk = TopKConfig(d_in=D_IN, d_sae=D_SAE, k=3)
    assert sae_config({"d_in": D_IN, "d_sae": D_SAE, "k": 3}) == topk  # topk is the default architecture
    assert type(sae_config(architecture="relu", d_in=D_IN, d_sae=D_SAE)) is ReLUConfig
    assert {n: a.config.__name__ for n, a in ARCHITECTURES.items()} == {
        "relu": "ReLUConfig", "topk": "TopKConfig", "batchtopk": "BatchTopKConfig", "jumprelu": "JumpReLUConfig",
        "matryoshka": "MatryoshkaConfig", "clt": "CLTConfig",
    }  # fmt: skip
    assert "k" not in ReLUConfig.model_fields and "l1_coefficient" not in TopKConfig.model_fields
    assert hash(topk) == hash(TopKConfig(d_in=D_IN, d_sae=D_SAE, k=3))  # frozen: a static jit argument
    for base in (SAEConfig, AuxKConfig):
        with pytest.raises(TypeError, match="base of the architectures' configs"):
            base(architecture="topk", d_in=D_IN, d_sae=D_SAE)
    with pytest.raises(ValueError, match="Input should be 'relu'"):
        ReLUConfig(architecture="topk", d_in=D_IN, d_sae=D_SAE)
    with pytest.raises(ValueError, match=r'config class ReLUConfig must have architecture: Literal\["toy"\]'):
        relu = get_architecture("relu")
        register(Architecture("toy", ReLUConfig, relu.encode, relu.decode, relu.objective))
    assert "toy" not in ARCHITECTURES


def test_params_pytree_works_with_optax() -> None:
    cfg = ReLUConfig(d_in=D_IN, d_sae=D_SAE)
    p = init_params(jax.random.PRNGKey(0), cfg)
    assert isinstance(p, SAEParams) and p.threshold is None
    state = optax.adam(1e-3).init(p)
    updates, _ = optax.adam(1e-3).update(jax.tree.map(jnp.ones_like, p), state, p)
    assert optax.apply_updates(p, updates).W_dec.shape == (D_SAE, D_IN)


@pytest.mark.parametrize(
    ("architecture", "fields", "message"),
    [
        (
            "topk",
            {"l0_coefficient": 1e-3},
            r"l0_coefficient does not apply to topk SAEs \(l0_coefficient applies to clt, jumprelu\)",
        ),
        (
            "relu",
            {"k": 3, "k_aux": 2},
            r"k, k_aux do not apply to relu SAEs \(k applies to batchtopk, clt, matryoshka, topk;",
        ),
        (
            "jumprelu",
            {"l1_coefficient": 1.0},
            r"l1_coefficient does not apply to jumprelu SAEs \(l1_coefficient applies to relu\)",
        ),
        (
            "batchtopk",
            {"kernels": "dense"},
            r"kernels does not apply to batchtopk SAEs \(kernels applies to clt, matryoshka, topk\)",
        ),
    ],
)
def test_config_rejects_fields_the_architecture_does_not_read(architecture: str, fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sae_config(architecture=architecture, d_in=D_IN, d_sae=64, **fields)


@pytest.mark.parametrize("arch", SAES)
def test_every_entry_states_its_facts_and_exports_round_trip(arch: str, tmp_path) -> None:
    entry = get_architecture(arch)
    kw = {"k": 3} if "k" in entry.config.model_fields else {}
    cfg = sae_config(architecture=arch, d_in=D_IN, d_sae=D_SAE, **kw)
    params = init_params(jax.random.PRNGKey(0), cfg)
    assert (params.threshold is not None) == cfg.uses_threshold
    save_saelens(tmp_path, params, cfg, {"hook_name": "h"})  # the dump holds every field, defaults included
    loaded = load_saelens(tmp_path)
    assert loaded.cfg == cfg
    assert (loaded.params.threshold is None) == (params.threshold is None)


def test_registry_facts_match_the_previous_per_module_rules() -> None:
    a = ARCHITECTURES
    assert {n for n in a if a[n].unit_norm_decoder} == {"topk", "batchtopk", "matryoshka"}
    assert {n: a[n].input_scaling for n in a} == {n: "unit" if n == "jumprelu" else "sqrt_d" for n in a}
    assert {n: a[n].latent_arrays for n in a} == {
        "relu": 3.0, "topk": 3.0, "jumprelu": 6.0, "batchtopk": 6.5, "matryoshka": 7.0, "clt": 3.0
    }  # fmt: skip
    assert {n for n in a if a[n].atoms} == {"jumprelu"} and {n for n in a if a[n].encode_sparse} == {"topk"}
    cfg = lambda name, **kw: sae_config(architecture=name, d_in=D_IN, d_sae=D_SAE, **kw)
    names = {
        n: a[n].saelens_architecture(cfg(n, **({"k": 3} if "k" in a[n].config.model_fields else {}))) for n in SAES
    }
    assert names == {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu",
                     "matryoshka": "jumprelu"}  # fmt: skip
    imports = {s: n for n in a for s in a[n].saelens_imports}
    assert imports == {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "batchtopk"}
    assert {n: a[n].saelens_keys for n in a if a[n].saelens_keys} == {"topk": ("k",)}
    over_topk = cfg("matryoshka", k=3, matryoshka_base="topk")
    assert a["matryoshka"].saelens_architecture(over_topk) == "topk" and not over_topk.uses_threshold
    theta = init_params(jax.random.PRNGKey(0), cfg("jumprelu", jumprelu_init_threshold=0.25)).threshold
    np.testing.assert_array_equal(theta, np.full(D_SAE, 0.25, np.float32))
    with pytest.raises(ValueError, match="already registered"):
        register(a["topk"])


@pytest.mark.parametrize(("arch", "theirs"), [("relu", "standard"), ("topk", "topk"), ("jumprelu", "jumprelu")])
def test_a_saelens_directory_without_our_config_loads_through_the_registry(arch: str, theirs: str, tmp_path) -> None:
    import json

    kw = {"k": 5} if arch == "topk" else {}
    cfg = sae_config(architecture=arch, d_in=D_IN, d_sae=D_SAE, **kw)
    save_saelens(tmp_path, init_params(jax.random.PRNGKey(0), cfg), cfg, {"hook_name": "h"})
    raw = json.loads((tmp_path / "cfg.json").read_text())
    del raw["metadata"]["saelab_config"]  # as SAELens itself writes it
    assert raw["architecture"] == theirs
    (tmp_path / "cfg.json").write_text(json.dumps(raw))
    assert load_saelens(tmp_path).cfg == cfg
    (tmp_path / "cfg.json").write_text(json.dumps(raw | {"architecture": "gated"}))
    with pytest.raises(
        ValueError,
        match=r"'gated' .* supported: \['batchtopk', 'jumprelu', 'jumprelu_transcoder', 'skip_transcoder', 'standard', "
        r"'topk', 'transcoder'\]",
    ):
        load_saelens(tmp_path)
