"""A new user's mistakes on the command line: each command exits non-zero, prints no traceback, and says what is
wrong and how to fix it (one test per mistake); one generation default; `saelab sae list`; the SAELens export
names the Hugging Face model."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.cli import main
from saelab.sae import ReLUConfig, SAEParams, load_sae, save_saelens
from tests.models.small import sliced_smollm2

HOOK = "blocks.2.hook_resid_post"


def _fails(capsys, argv: list[str], *needles: str) -> str:
    """Run `saelab argv` in-process: exit status 2, no traceback, and every needle in the message."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "pydantic" not in err and "type=" not in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def _random_sae(out: Path, d: int = 576, m: int = 32, hook: str = HOOK) -> Path:
    k1, k2 = jax.random.split(jax.random.key(0))
    w = jax.random.normal(k1, (d, m)) / np.sqrt(d)
    params = SAEParams(w, 0.05 * jax.random.normal(k2, (m,)), w.T, jnp.zeros((d,)), None)
    meta = {"model_name": "smollm2-135m", "hook_name": hook}
    return save_saelens(out, params, ReLUConfig(d_in=d, d_sae=m), meta)


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory) -> Path:
    return _random_sae(tmp_path_factory.mktemp("sae") / "sae")


def test_1_config_typos_and_bad_values_are_said_in_the_commands_words(tmp_path, capsys) -> None:
    f = tmp_path / "t.toml"
    f.write_text('[data]\nstore = "nowhere"\n[sae]\narchitecture = "topk"\nk = 8\nexpansio = 8\n')
    _fails(capsys, ["train", str(f)], "sae.expansio: unknown key; did you mean 'expansion'?")
    f.write_text('[data]\nstore = "nowhere"\n[train]\ntokns = 8\n')
    _fails(capsys, ["train", str(f)], "train.tokns: unknown key; did you mean 'tokens'?")
    _fails(capsys, ["train", "--set", "train.tokens=-5"], "train.tokens: must be > 0 (got -5)")
    _fails(capsys, ["train", "--set", "data.batch_size=abc"], "data.batch_size: must be an integer (got 'abc')")
    _fails(capsys, ["eval", str(tmp_path), "--tokens", "-5"], "--tokens: must be > 0 (got -5)")
    _fails(capsys, ["eval", str(tmp_path), "--set", "tokns=5"], "did you mean 'tokens' for 'tokns'?")
    err = _fails(
        capsys, ["inspect", "feature", str(tmp_path), "3", "--store", str(tmp_path), "--top-k", "0"], "--top-k: must"
    )
    assert "InspectConfig" not in err


def test_2_a_model_alias_typo_is_no_network_error(capsys, monkeypatch) -> None:
    from saelab.models import loading

    def no_hub(name):
        raise AssertionError(f"tried the hub for {name!r}")

    monkeypatch.setattr(loading, "_download", no_hub)
    err = _fails(capsys, ["model", "info", "smollm-135m"], "unknown model 'smollm-135m'; did you mean 'smollm2-135m'?")
    assert "smollm2-135m (shipped with saelab)" in err and "gpt2-small" in err and "owner/name" in err
    with pytest.raises(AssertionError, match="tried the hub"):  # a hub id still goes to the hub
        loading.resolve("someone/some-model")


def test_3_hook_and_release_typos_get_a_did_you_mean(tmp_path, capsys) -> None:
    argv = ["harvest", "--hooks", "blocks.1.hook_resid_pst", "--tokens", "64", "--out", str(tmp_path / "s")]
    _fails(capsys, argv, "unknown hook point(s) ['blocks.1.hook_resid_pst'] (did you mean 'blocks.1.hook_resid_post'?)")
    _fails(capsys, ["sae", "info", "gpt2-small-res-j", "blocks.8.hook_resid_pre"], "did you mean 'gpt2-small-res-jb'?")
    _fails(capsys, ["sae", "info", "gemma-scope-2b-pt-re"], "unknown SAE release", "'gemma-scope-2b-pt-res'?")
    _fails(capsys, ["sae", "info", "gpt2-small-res-jb", "blocks.8.hook_resid_pr"], "'blocks.8.hook_resid_pre'?")
    _fails(capsys, ["sae", "info", str(tmp_path / "absent")], "neither an SAE folder nor a known release")


def test_4_an_empty_prompt_to_generate_is_an_error(capsys) -> None:
    _fails(capsys, ["model", "generate", "smollm2-135m", ""], "the prompt is empty; give some text to continue")
    with pytest.raises(ValueError, match="prompts \\[1\\] are empty"):
        sliced_smollm2(2).generate(["Hi", ""], 2)


def test_5_steer_refuses_an_sae_of_another_width_before_generating(tmp_path, capsys, monkeypatch) -> None:
    from saelab.models import Model

    def no_generation(*a, **k):
        raise AssertionError("generated before checking the SAE")

    monkeypatch.setattr(Model, "generate", no_generation)
    wide = _random_sae(tmp_path / "wide", d=960)
    argv = ["splice", "steer", str(wide), "Hi", "--latent", "1", "--alpha", "2"]
    _fails(capsys, argv, f"SAE d_in 960 does not match hook {HOOK} width 576", "--model")


def test_6_explain_names_its_target_token_its_report_and_refuses_empty_prompts(
    sae_dir: Path, tmp_path, capsys, monkeypatch
) -> None:
    _fails(capsys, ["splice", "explain", str(sae_dir), ""], "the prompt is empty")
    err = _fails(capsys, ["splice", "explain", str(sae_dir), "The capital of France is", "--target", " Parisian city"])
    assert "is 3 tokens [' Paris', 'ian', ' city']" in err and "--target ' Paris'" in err
    monkeypatch.chdir(tmp_path)  # no report/ or results/ here
    assert (
        main(["splice", "explain", str(sae_dir), "The capital of France is", "--target", " Paris", "--n-total", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "no dashboard report of" in out and "saelab inspect" in out and "--report DIR" in out
    assert "top tokens" not in out.split("what drives")[1].split("\n")[3]  # no empty columns

    from saelab.spliced.explain import find_report

    report = tmp_path / "results" / "demo" / "dashboards"
    (report / "data").mkdir(parents=True)
    (report / "data" / "meta.js").write_text(f'saelabData("meta",{json.dumps({"sae": str(sae_dir)})});\n')
    assert find_report(sae_dir) == report
    assert find_report(_random_sae(tmp_path / "other")) is None


def test_7_one_generation_default_bos_and_32_tokens_everywhere(capsys) -> None:
    from saelab.models import Model
    from saelab.models.generate import DEFAULT_NEW_TOKENS
    from saelab.spliced.model import SplicedModel
    from saelab.spliced.steer import steer

    assert DEFAULT_NEW_TOKENS == 32
    for fn in (Model.generate, SplicedModel.generate, steer):
        assert inspect.signature(fn).parameters["max_new_tokens"].default == DEFAULT_NEW_TOKENS
    assert inspect.signature(Model.generate).parameters["prepend_bos"].default is True
    for cmd in (["model", "generate", "--help"], ["splice", "steer", "--help"]):
        with pytest.raises(SystemExit):
            main(cmd)
        text = " ".join(capsys.readouterr().out.split())
        assert "(default 32)" in text and "BOS token" in text

    model = sliced_smollm2(2)
    d, m = model.cfg.d_model, 48
    k1, k2 = jax.random.split(jax.random.key(0))
    params = SAEParams(jax.random.normal(k1, (d, m)) / d**0.5, jnp.zeros((m,)), jax.random.normal(k2, (m, d)) / d**0.5,
                       jnp.zeros((d,)), None)  # fmt: skip
    from saelab.sae import LoadedSAE

    sae = LoadedSAE(params, ReLUConfig(d_in=d, d_sae=m), {"hook_name": "blocks.1.hook_resid_post"})
    prompt = "The capital of France is"
    plain = model.generate(prompt)
    assert plain == model.generate(prompt, 32, prepend_bos=True)  # BOS first by default, as trained
    assert SplicedModel(model, [sae], use_error_term=True).generate(prompt) == plain  # an exact splice changes nothing


def test_8_sae_list_names_every_release(capsys, monkeypatch) -> None:
    from saelab.sae.releases import RELEASES

    assert main(["sae", "list", "--json"]) == 0
    rows = {r["release"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == list(RELEASES)
    jb = rows["gpt2-small-res-jb"]
    assert (jb["model"], jb["n_saes"]) == ("gpt2-small", 13)
    assert jb["hooks"] == "blocks.L.hook_resid_pre, blocks.L.hook_resid_post"
    assert rows["EleutherAI/sae-llama-3-8b-32x"]["n_saes"] == 32
    assert rows["gemma-scope-2b-pt-res"]["n_saes"] is None and rows["gemma-scope-2b-pt-res"]["ids_pattern"]
    assert rows["llama_scope_lxr_8x"]["hooks"] == "blocks.L.hook_resid_post"
    monkeypatch.setenv("COLUMNS", "240")  # a wide terminal: one line per release
    assert main(["sae", "list"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "pythia-70m-deduped-res-sm" in ln]
    assert len(lines) == 1 and "blocks.L.hook_resid_pre, blocks.L.hook_resid_post" in lines[0] and " 7 " in lines[0]


def test_9_the_saelens_export_names_the_hugging_face_model(tmp_path) -> None:
    from saelab.sae import init_params
    from saelab.spliced.loading import model_and_sae
    from saelab.train.config import Resolved, TrainConfig
    from saelab.train.sae_export import export

    cfg = TrainConfig()
    sae_cfg = ReLUConfig(d_in=576, d_sae=16)
    manifest = {"meta": {"model": "smollm2-135m", "context": 64, "weights_hash": "abc"}}
    out = export(init_params(jax.random.key(0), sae_cfg), Resolved(cfg, sae_cfg, HOOK, manifest), 1.0, tmp_path, cfg)
    meta = json.loads((out / "cfg.json").read_text())["metadata"]
    assert (meta["model_name"], meta["saelab_model"]) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m")
    assert load_sae(out).model_name == "smollm2-135m"  # what saelab loads: the shipped model, no download
    model, _ = model_and_sae(out)
    assert model.cfg.d_model == 576
