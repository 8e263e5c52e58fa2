"""A cross-layer transcoder trained by `saelab train` straight from the model (SmolLM2 cut to its first 3 blocks):
it learns, a killed run resumes bit for bit, its circuit-tracer export is the trained CLT with each layer's scales
folded in, one train step's loss is the CLT's loss, and `saelab eval RUN` evaluates it as a replacement model."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab import evals, train
from saelab.evals.config import EvalConfig
from saelab.runtime.rundir import RunDir
from saelab.sae import CLTConfig
from saelab.sae import clt as clt_sae
from saelab.sae.clt_train import decoder_row_norms, fold_clt_scaling
from saelab.sae.formats import circuit_tracer
from saelab.sae.losses import AuxState
from saelab.train import stream
from saelab.train.clt_config import IN_TEMPLATE, OUT_TEMPLATE
from saelab.train.mesh import make_mesh
from saelab.train.placement import initial_state
from saelab.train.step import make_train_step
from saelab.train.stream import ModelCache
from tests.models.small import sliced_smollm2
from tests.train.same_run import without_speed
from tests.train.test_stream import TEXT

LAYERS = 3


@pytest.fixture(scope="module")
def small():
    """On-the-fly runs here load SmolLM2 cut to its first 3 blocks, in a cache of their own."""
    model = sliced_smollm2(LAYERS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stream, "MODELS", ModelCache())
        mp.setattr(stream.Model, "load", staticmethod(lambda name, dtype: model))
        yield model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    f = tmp_path_factory.mktemp("corpus") / "small.txt"
    f.write_text(TEXT)
    return f"text:{f}"


def _cfg(corpus: str, out, run: str, **sae) -> train.TrainConfig:
    """24 steps of 64 tokens from a shuffle buffer of 3 batches; metrics and checkpoints every 4 steps; no AuxK
    (no latent dies in 1,536 tokens; leaving it out of the program keeps compiling fast)."""
    data = {"source": "model", "corpus": corpus, "split": "all"}
    data |= {"context": 16, "model_batch": 4, "buffer_batches": 3, "batch_size": 64}
    return train.TrainConfig(
        data=data,
        sae={"architecture": "clt", "d_sae": 64, "k": 8, "aux_coefficient": 0.0} | sae,  # AuxK: the step test
        optim={"lr": 3e-3},
        train={"name": run, "out": str(out), "tokens": 1536, "log_every": 4, "checkpoint_every": 4}
        | {"wandb": "disabled", "progress": False},
    )


@pytest.fixture(scope="module")
def full(small, corpus, tmp_path_factory) -> train.TrainResult:
    return train.run(_cfg(corpus, tmp_path_factory.mktemp("runs"), "clt"))


def test_a_clt_config_takes_its_hooks_and_layers_from_the_model(small, corpus, tmp_path) -> None:
    cfg = _cfg(corpus, tmp_path, "c")
    assert (cfg.data.hook, cfg.data.target_hook) == (IN_TEMPLATE, OUT_TEMPLATE)
    r = train.resolve(cfg)
    assert isinstance(r.sae, CLTConfig) and (r.sae.n_layers, r.sae.d_in, r.sae.resolved_d_out) == (3, 576, 576)
    assert r.manifest["hooks"][:2] == ["blocks.0.ln2.hook_normalized", "blocks.1.ln2.hook_normalized"]
    assert train.resolve(_cfg(corpus, tmp_path, "c", n_layers=2)).sae.n_layers == 2
    with pytest.raises(ValueError, match="n_layers must be 1..3"):
        train.resolve(_cfg(corpus, tmp_path, "c", n_layers=4))
    with pytest.raises(ValueError, match="remove both"):
        train.resolve(
            _cfg(corpus, tmp_path, "c").model_copy(update={"data": cfg.data.model_copy(update={"hook": "x"})})
        )
    with pytest.raises(ValueError, match="eval_every = 0"):
        bad = cfg.train.model_copy(update={"eval_every": 4})
        train.resolve(cfg.model_copy(update={"train": bad}))
    with pytest.raises(ValueError, match="data.source = 'model'"):
        train.resolve(train.TrainConfig(sae={"architecture": "clt", "n_layers": 2}))


def test_a_clt_trained_from_the_model_learns_with_unit_decoder_rows(full) -> None:
    rows = RunDir(full.run_dir).read_metrics()
    assert full.steps == 24 and [r["step"] for r in rows] == [4, 8, 12, 16, 20, 24]
    assert rows[-1]["mse"] < 0.6 * rows[0]["mse"], [r["mse"] for r in rows]
    assert rows[-1]["explained_variance"] > rows[0]["explained_variance"] + 0.2
    assert 0 < rows[-1]["l0"] <= 8.0  # at most k a layer per token (ReLU on the top k), the mean over layers
    norms = np.asarray(decoder_row_norms(full.params.W_dec))  # TopK: unit decoder rows over all target layers
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_a_killed_clt_run_resumes_bitwise(full, corpus, tmp_path) -> None:
    cfg = _cfg(corpus, full.run_dir.parent, "split")
    part = train.run(cfg, stop_at_step=7)  # inside the third fill; checkpoints at 4 and 7
    RunDir(part.run_dir).checkpoints.joinpath("7").rename(full.run_dir.parent / "lost")  # killed while saving
    resumed = train.run(train.load_run_config(part.run_dir), resume=True)  # from 4, inside the second fill
    assert (part.steps, resumed.start_step, resumed.steps) == (7, 4, 24)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert without_speed(RunDir(full.run_dir).read_metrics()) == without_speed(RunDir(resumed.run_dir).read_metrics())


def test_the_export_is_the_trained_clt_with_every_layers_scales_folded_in(full, small) -> None:
    """circuit_tracer.load of RUN/sae equals fold_clt_scaling of the trained parameters (1e-6 relative), and on raw
    activations the export's output equals the trained CLT's on scaled ones, divided by each layer's output scale."""
    ct = circuit_tracer.load(RunDir(full.run_dir).sae)
    params, cfg = ct.clt
    prov = ct.metadata["provenance"]
    assert ct.metadata["model_name"] == prov["saelab_model"] == "smollm2-135m"
    s, o = prov["input_scales_folded"], prov["output_scales_folded"]
    assert len(s) == len(o) == LAYERS and len(set(o)) == LAYERS  # one scale per layer
    want = fold_clt_scaling(full.params, s, o)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6 * float(np.abs(b).max()))
    assert cfg.activation == "topk" and params.threshold is None  # TopK reads back as TopK
    x = jax.random.normal(jax.random.key(1), (32, LAYERS, 576)) * 3.0
    forward = jax.jit(lambda p, x: clt_sae.decode(p, clt_sae.encode(p, x, cfg)))  # one compile for both
    raw = forward(params, x)
    scaled = forward(jax.device_get(full.params), x * jnp.asarray(s)[:, None]) / jnp.asarray(o)[:, None]
    np.testing.assert_allclose(np.asarray(raw), np.asarray(scaled), rtol=1e-4, atol=1e-4 * float(jnp.abs(scaled).max()))


def test_folding_a_jumprelu_clts_scales_gives_its_outputs_on_raw_activations() -> None:
    """A JumpReLU CLT with thresholds (and biases) trained on x_l * s_l, y_t * o_t: the folded CLT on raw x equals
    the trained one on scaled x divided by o_t (float32, 1e-5 of the largest output)."""
    sae = CLTConfig(d_in=8, d_sae=16, d_out=6, n_layers=3, activation="jumprelu")
    s, o = (0.5, 2.0, 4.0), (3.0, 0.25, 1.5)

    @jax.jit
    def outputs(key):  # (trained CLT on scaled x / o, folded CLT on raw x, pre-activations), one compile
        k0, k1, k2, k3 = jax.random.split(key, 4)
        p = clt_sae.init_params(k0, sae)
        p = p._replace(
            b_enc=0.1 * jax.random.normal(k1, p.b_enc.shape),
            b_dec=jax.random.normal(k2, p.b_dec.shape),
            threshold=jnp.full(p.threshold.shape, 0.05),
        )
        x = jax.random.normal(k3, (64, 3, 8))
        sx = x * jnp.asarray(s)[:, None]
        scaled = clt_sae.decode(p, clt_sae.encode(p, sx, sae)) / jnp.asarray(o)[:, None]
        folded = fold_clt_scaling(p, s, o)
        return scaled, clt_sae.decode(folded, clt_sae.encode(folded, x, sae)), clt_sae.pre_activations(p, sx, sae)

    scaled, raw, pre = outputs(jax.random.key(3))
    assert bool(((pre > 0) & (pre <= 0.05)).any()) and bool((pre > 0.05).any())  # the thresholds cut some codes
    np.testing.assert_allclose(np.asarray(raw), np.asarray(scaled), atol=1e-5 * float(jnp.abs(scaled).max()))


def test_one_train_step_loss_is_the_clt_loss_with_the_trainers_auxk_weight() -> None:
    """The step's loss (per-layer scales applied in the step) equals clt.train_loss on the scaled batch plus the
    trainer's AuxK re-weighting (total variance - 1) x aux_coefficient x AuxK, with a third of the latents dead;
    float32 tolerance 1e-5 relative."""
    sae = CLTConfig(d_in=16, d_sae=32, d_out=12, n_layers=2, k=4, k_aux=8)
    cfg = train.TrainConfig(
        data={"source": "model", "hook": IN_TEMPLATE, "batch_size": 64},
        sae={"architecture": "clt", "d_sae": 32},
        train={"dead_tokens": 100, "wandb": "disabled"},
    )
    state, tx = initial_state(sae, cfg, make_mesh())
    dead = jnp.zeros((2 * 32,), jnp.int32).at[::3].set(1000)
    state = state._replace(since_fired=dead)
    s, o = (0.5, 3.0), (1.5, 0.25)
    kx, ky = jax.random.split(jax.random.key(0))
    x, y = jax.random.normal(kx, (64, 2, 16)), jax.random.normal(ky, (64, 2, 12)) + 1.0
    step = make_train_step(sae, tx, scale=s, out_scale=o, dead_tokens=100, sparsity_warmup_steps=0)
    sx, sy = x * jnp.asarray(s)[:, None], y * jnp.asarray(o)[:, None]
    aux = AuxState(dead >= 100, jnp.ones((), jnp.float32))
    both = jax.jit(lambda st: (step(st, x, y)[1], clt_sae.train_loss(st.params, sx, sae, aux, sy)))  # one compile
    m, (loss, out) = both(state)
    var = jnp.sum(jnp.square(sy - sy.mean(0))) / 64
    want = loss + (var - 1.0) * sae.aux_coefficient * out.aux_loss
    assert float(out.aux_loss) > 0
    np.testing.assert_allclose(float(m["loss"]), float(want), rtol=1e-5)
    np.testing.assert_allclose(float(m["mse"]), float(out.mse), rtol=1e-5)


def test_saelab_eval_of_the_run_evaluates_the_clt_as_a_replacement_model(full, small, corpus) -> None:
    cfg = EvalConfig(sae=full.run_dir, corpus=corpus, split="all", tokens=256, context=16, batch=4, progress=False)
    out = evals.run(cfg, model=small)
    assert out["meta"]["kind"] == "cross_layer_transcoder" and out["meta"]["n_layers"] == LAYERS
    assert [row["hook_out"] for row in out["layers"]] == [OUT_TEMPLATE.format(layer=i) for i in range(LAYERS)]
    assert out["kl_div_with_errors"] < 1e-4 and abs(out["ce_loss_recovered_with_errors"] - 1.0) < 1e-3
    assert 0 < out["l0"] < 40 and np.isfinite(out["ce_loss_replacement"])
    assert Path(out["meta"]["out"]).parent == full.run_dir  # beside the run, as every eval of a run
