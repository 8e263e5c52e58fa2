"""The release registry: ids to repo folders, the offline error, loading from the Hugging Face cache, and the
TransformerLens model-name aliases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saelab.models.aliases import TL_ALIASES, hf_id
from saelab.sae import load_pretrained
from saelab.sae.cli import describe
from saelab.sae.releases import RELEASES, locate
from tests.sae.published_files import rand, saelens_cfg, write_gemmascope, write_saelens


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network and an empty (or test-filled) Hugging Face cache."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _cached_snapshot(cache, repo_id: str):
    """The snapshot folder huggingface_hub reads offline for repo_id at revision main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


def test_locate_maps_ids_to_repo_folders() -> None:
    loc = locate("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")
    assert (loc.repo_id, loc.folder, loc.format) == (
        "google/gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_82", "gemmascope"
    )  # fmt: skip
    assert (
        locate("gemma-scope-2b-pt-res", "layer_3/width_65k/average_l0_89").folder == "layer_3/width_65k/average_l0_89"
    )
    assert locate("pythia-70m-deduped-res-sm", "blocks.0.hook_resid_pre").folder == "e-res-sm"
    assert locate("gpt2-small-res-jb", "blocks.8.hook_resid_pre").folder == "blocks.8.hook_resid_pre"
    assert locate("llama_scope_lxr_8x", "l15r_8x").folder == "Llama3_1-8B-Base-L15R-8x"
    assert locate("EleutherAI/sae-llama-3-8b-32x", "layers.31").format == "sparsify"
    with pytest.raises(ValueError, match=r"'layers\.32' is not in release 'EleutherAI/sae-llama-3-8b-32x'"):
        locate("EleutherAI/sae-llama-3-8b-32x", "layers.32")
    with pytest.raises(ValueError, match=r"unknown SAE release 'gpt2-res'; known: .*gpt2-small-res-jb"):
        locate("gpt2-res", "x")
    for name, r in RELEASES.items():  # every release's example is one of its ids
        assert locate(name, r.example).repo_id == r.repo_id


def test_offline_error_names_release_repo_folder_and_the_local_route(offline) -> None:
    with pytest.raises(FileNotFoundError) as e:
        load_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
    msg = str(e.value)
    for part in ("'gpt2-small-res-jb'", "jbloom/GPT2-Small-SAEs-Reformatted", "blocks.8.hook_resid_pre/",
                 "huggingface-cli download", "saelab sae info DIR/blocks.8.hook_resid_pre", "load_sae("):  # fmt: skip
        assert part in msg, part


def test_a_cached_gemma_scope_release_loads_offline_with_its_hook_and_model(offline) -> None:
    snap = _cached_snapshot(offline, "google/gemma-scope-2b-pt-res")
    write_gemmascope(snap / "layer_12" / "width_16k" / "average_l0_82", rand(0))
    sae = load_pretrained("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")
    assert (sae.format, sae.hook_name, sae.model_name) == ("gemmascope", "blocks.12.hook_resid_post", "gemma-2-2b")
    np.testing.assert_array_equal(np.asarray(sae.params.threshold), rand(0)["threshold"])


def test_gpt2_res_jb_asks_for_transformer_lens_processing_and_gemma_scope_for_none(offline) -> None:
    snap = _cached_snapshot(offline, "jbloom/GPT2-Small-SAEs-Reformatted")
    w = rand(1)
    w.pop("threshold")
    write_saelens(snap / "blocks.8.hook_resid_pre", w, saelens_cfg("standard"))
    sae = load_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
    assert sae.metadata["model_processing"] == "transformer_lens"
    snap = _cached_snapshot(offline, "google/gemma-scope-2b-pt-res")
    write_gemmascope(snap / "layer_12" / "width_16k" / "average_l0_82", rand(0))
    assert (
        load_pretrained("gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_82").metadata["model_processing"]
        == "none"
    )


def test_sae_info_reports_a_cached_release_and_a_local_folder(offline, tmp_path, capsys) -> None:
    snap = _cached_snapshot(offline, "jbloom/GPT2-Small-SAEs-Reformatted")
    w = rand(1)
    w.pop("threshold")
    write_saelens(snap / "blocks.8.hook_resid_pre", w, saelens_cfg("standard"))
    info = describe("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
    assert info["model"] == "gpt2-small (Hugging Face: gpt2)" and info["format"] == "saelens"
    assert "TransformerLens-processed" in info["note"]
    local = write_saelens(tmp_path / "cnr", w, saelens_cfg("topk", k=4, normalize_activations="constant_norm_rescale"))
    from saelab.cli import main

    assert main(["sae", "info", str(local), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    keys = ("format", "architecture", "hook", "hook_head_index", "d_in", "d_sae", "dtype", "k")
    assert {k: got[k] for k in keys} == {
        "format": "saelens", "architecture": "topk", "hook": "blocks.3.hook_resid_pre", "hook_head_index": None,
        "d_in": 8, "d_sae": 32, "dtype": "float32", "k": 4,
    }  # fmt: skip
    assert got["normalisation"].startswith("constant_norm_rescale: each token rescaled to norm sqrt(d_in)")
    assert main(["sae", "info", str(local)]) == 0
    table = capsys.readouterr().out
    assert (
        "normalisation" in table and "blocks.3.hook_resid_pre" in table and "gpt2-small (Hugging Face: gpt2)" in table
    )
    assert main(["sae", "info", "gpt2-small-res-jb"]) == 2
    assert (
        "give an SAE id too, e.g. `saelab sae info gpt2-small-res-jb blocks.8.hook_resid_pre`"
        in capsys.readouterr().err
    )


def test_transformer_lens_aliases_map_to_hugging_face_ids() -> None:
    assert hf_id("gpt2-small") == "gpt2"
    assert hf_id("pythia-70m-deduped") == "EleutherAI/pythia-70m-deduped"
    assert hf_id("gemma-2-2b") == "google/gemma-2-2b" and hf_id("gemma-2-9b-it") == "google/gemma-2-9b-it"
    assert hf_id("llama-3.1-8b") == hf_id("Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    assert hf_id("qwen2.5-0.5b") == "Qwen/Qwen2.5-0.5B" and hf_id("qwen3-0.6b") == "Qwen/Qwen3-0.6B"
    assert hf_id("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"  # not an alias: unchanged
    assert all(v != k for k, v in TL_ALIASES.items())
    for r in RELEASES.values():  # every release's model is a Hugging Face id after the lookup
        assert "/" in hf_id(r.model) or hf_id(r.model) == "gpt2"


def test_model_loading_resolves_an_alias_before_going_to_the_hub(monkeypatch) -> None:
    from saelab.models import loading

    asked = []
    monkeypatch.setattr(loading, "_download", lambda repo_id: asked.append(repo_id) or repo_id)
    loading.resolve("gemma-2-2b")
    loading.resolve("pythia-70m-deduped")
    assert asked == ["google/gemma-2-2b", "EleutherAI/pythia-70m-deduped"]
