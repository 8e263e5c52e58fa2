"""Published SAE releases by name (SAELens's names, from its sae_lens/pretrained_saes.yaml): release + SAE id ->
Hugging Face repo, folder and format, fetched with huggingface_hub and read by saelab.sae.formats.

Offline (no network, or HF_HUB_OFFLINE=1) and not in the local Hugging Face cache, `load_pretrained` raises
FileNotFoundError naming the release, the repo and the folder, and how to load a copy made elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from saelab.sae.config import ComputeDtype
from saelab.sae.formats import FORMATS, LoadOptions
from saelab.sae.formats.gemmascope import hook_of
from saelab.sae.loaded import LoadedSAE


class Release(NamedTuple):
    """One release: where its SAEs live and which of saelab.sae.formats they are in."""

    repo_id: str
    format: str  # a key of saelab.sae.formats.FORMATS
    model: str  # as SAELens writes it (a TransformerLens alias or a Hugging Face id)
    paths: Mapping[str, str] | None = None  # SAE id -> folder in the repo; None: the id is the folder
    pattern: str | None = None  # with paths None: the ids the release has, as a regex
    example: str = ""  # one valid id, for messages
    note: str = ""  # what a user should know (e.g. the model processing it was trained on)
    model_processing: str = "none"  # the weight processing its SAEs assume (saelab.models.tl_processing)


_GPT2_JB = {f"blocks.{i}.hook_resid_pre": f"blocks.{i}.hook_resid_pre" for i in range(12)} | {
    "blocks.11.hook_resid_post": "blocks.11.hook_resid_post"
}
_PYTHIA_RES = {"blocks.0.hook_resid_pre": "e-res-sm"} | {f"blocks.{i}.hook_resid_post": f"{i}-res-sm" for i in range(6)}


def _pythia_layers(hook: str, kind: str) -> dict[str, str]:
    """SAE id -> folder of one of the Pythia-70m-deduped releases, one SAE per layer."""
    return {f"blocks.{i}.{hook}": f"{i}-{kind}-sm" for i in range(6)}


def _pythia(kind: str, paths: Mapping[str, str], example: str) -> Release:
    """One of the Pythia-70m-deduped releases (res, mlp, att), as ctigges reprocessed them for SAELens."""
    return Release(
        f"ctigges/pythia-70m-deduped__{kind}-sm_processed", "saelens", "pythia-70m-deduped", paths, example=example
    )


_GEMMA_2B_RES_CANONICAL_L0 = {  # folder layer_L/width_W -> the average_l0 SAELens calls canonical
    "layer_0/width_16k": 105, "layer_1/width_16k": 102, "layer_2/width_16k": 141, "layer_3/width_16k": 59,
    "layer_4/width_16k": 124, "layer_5/width_16k": 68, "layer_6/width_16k": 70, "layer_7/width_16k": 69,
    "layer_8/width_16k": 71, "layer_9/width_16k": 73, "layer_10/width_16k": 77, "layer_11/width_16k": 80,
    "layer_12/width_16k": 82, "layer_13/width_16k": 84, "layer_14/width_16k": 84, "layer_15/width_16k": 78,
    "layer_16/width_16k": 78, "layer_17/width_16k": 77, "layer_18/width_16k": 74, "layer_19/width_16k": 73,
    "layer_20/width_16k": 71, "layer_21/width_16k": 70, "layer_22/width_16k": 72, "layer_23/width_16k": 75,
    "layer_24/width_16k": 73, "layer_25/width_16k": 116, "layer_5/width_1m": 114, "layer_12/width_1m": 107,
    "layer_19/width_1m": 88, "layer_12/width_262k": 121, "layer_12/width_32k": 76, "layer_12/width_524k": 115,
    "layer_0/width_65k": 73, "layer_1/width_65k": 121, "layer_2/width_65k": 77, "layer_3/width_65k": 89,
    "layer_4/width_65k": 89, "layer_5/width_65k": 105, "layer_6/width_65k": 107, "layer_7/width_65k": 107,
    "layer_8/width_65k": 111, "layer_9/width_65k": 118, "layer_10/width_65k": 128, "layer_11/width_65k": 70,
    "layer_12/width_65k": 72, "layer_13/width_65k": 75, "layer_14/width_65k": 73, "layer_15/width_65k": 127,
    "layer_16/width_65k": 128, "layer_17/width_65k": 125, "layer_18/width_65k": 116, "layer_19/width_65k": 115,
    "layer_20/width_65k": 114, "layer_21/width_65k": 111, "layer_22/width_65k": 116, "layer_23/width_65k": 123,
    "layer_24/width_65k": 124, "layer_25/width_65k": 93,
}  # fmt: skip
_GEMMA_SCOPE_ID = r"(layer_\d+|embedding)/width_\d+[km]/average_l0_\d+"

RELEASES: dict[str, Release] = {
    "gpt2-small-res-jb": Release(
        "jbloom/GPT2-Small-SAEs-Reformatted",
        "saelens",
        "gpt2-small",
        _GPT2_JB,
        example="blocks.8.hook_resid_pre",
        note="trained on TransformerLens-processed GPT-2 (folded LayerNorm, centred writing weights)",
        model_processing="transformer_lens",
    ),
    "gemma-scope-2b-pt-res": Release(
        "google/gemma-scope-2b-pt-res",
        "gemmascope",
        "gemma-2-2b",
        pattern=_GEMMA_SCOPE_ID,
        example="layer_12/width_16k/average_l0_82",
    ),
    "gemma-scope-2b-pt-res-canonical": Release(
        "google/gemma-scope-2b-pt-res",
        "gemmascope",
        "gemma-2-2b",
        {f"{k}/canonical": f"{k}/average_l0_{v}" for k, v in _GEMMA_2B_RES_CANONICAL_L0.items()},
        example="layer_12/width_16k/canonical",
    ),
    "gemma-scope-9b-pt-res": Release(
        "google/gemma-scope-9b-pt-res",
        "gemmascope",
        "gemma-2-9b",
        pattern=_GEMMA_SCOPE_ID,
        example="layer_20/width_16k/average_l0_68",
    ),
    "pythia-70m-deduped-res-sm": _pythia("res", _PYTHIA_RES, "blocks.3.hook_resid_post"),
    "pythia-70m-deduped-mlp-sm": _pythia("mlp", _pythia_layers("hook_mlp_out", "mlp"), "blocks.3.hook_mlp_out"),
    "pythia-70m-deduped-att-sm": _pythia("att", _pythia_layers("hook_attn_out", "att"), "blocks.3.hook_attn_out"),
    "llama_scope_lxr_8x": Release(
        "fnlp/Llama3_1-8B-Base-LXR-8x",
        "llamascope",
        "meta-llama/Llama-3.1-8B",
        {f"l{i}r_8x": f"Llama3_1-8B-Base-L{i}R-8x" for i in range(32)},
        example="l15r_8x",
    ),
    "EleutherAI/sae-llama-3-8b-32x": Release(
        "EleutherAI/sae-llama-3-8b-32x",
        "sparsify",
        "meta-llama/Meta-Llama-3-8B",
        pattern=r"layers\.([0-9]|[12][0-9]|3[01])",
        example="layers.16",
    ),
}


class Located(NamedTuple):
    """Where one SAE of a release lives."""

    release: str
    sae_id: str
    repo_id: str
    folder: str
    format: str
    model: str


def locate(release: str, sae_id: str) -> Located:
    """Repo, folder and format of `sae_id` in `release`; ValueError naming the valid releases or ids."""
    if release not in RELEASES:
        raise ValueError(f"unknown SAE release {release!r}; known: {', '.join(sorted(RELEASES))}")
    r = RELEASES[release]
    if r.paths is not None:
        folder = r.paths.get(sae_id)
    else:
        folder = sae_id if r.pattern and re.fullmatch(r.pattern, sae_id) else None
    if folder is None:
        ids = list(r.paths)[:6] if r.paths is not None else [r.example]
        raise ValueError(f"SAE id {sae_id!r} is not in release {release!r}; ids look like {ids}")
    return Located(release, sae_id, r.repo_id, folder, r.format, r.model)


def fetch(loc: Located) -> Path:
    """The local folder of `loc` (downloaded into the Hugging Face cache when online)."""
    try:
        from huggingface_hub import snapshot_download

        root = snapshot_download(loc.repo_id, allow_patterns=[f"{loc.folder}/*"])
    except Exception as e:  # noqa: BLE001 - offline, missing repo and auth errors all end here
        raise FileNotFoundError(offline_message(loc, e)) from e
    path = Path(root) / loc.folder
    if not path.is_dir():
        raise FileNotFoundError(f"{loc.repo_id} has no folder {loc.folder!r} (release {loc.release!r})")
    return path


def offline_message(loc: Located, error: BaseException) -> str:
    """What to do when a release cannot be fetched: where it lives and how to load a copy made elsewhere."""
    return (
        f"SAE release {loc.release!r} id {loc.sae_id!r} lives in Hugging Face repo {loc.repo_id}, folder "
        f"{loc.folder}/, which is not in the local cache and could not be downloaded ({type(error).__name__}: "
        f"{error}). On a machine with network access run `huggingface-cli download {loc.repo_id} --include "
        f"'{loc.folder}/*' --local-dir DIR`, copy DIR here and load DIR/{loc.folder} with "
        f"`saelab sae info DIR/{loc.folder}` or saelab.sae.load_sae('DIR/{loc.folder}') "
        f"(its model: {loc.model})"
    )


def load_pretrained(
    release: str,
    sae_id: str,
    *,
    runtime_norm: bool = False,
    compute_dtype: ComputeDtype | None = None,
) -> LoadedSAE:
    """A published SAE by SAELens's release name and SAE id, e.g.
    `load_pretrained("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")`."""
    loc = locate(release, sae_id)
    path = fetch(loc)
    meta: dict[str, Any] = {"model_name": loc.model, "release": release, "sae_id": sae_id}
    meta["model_processing"] = RELEASES[release].model_processing  # eval, splice and steer process the model so
    if loc.format == "gemmascope":
        meta["hook_name"] = hook_of(Path(loc.repo_id) / loc.folder)
    opts = LoadOptions(None, runtime_norm, compute_dtype, meta)
    return FORMATS[loc.format].load(path, opts)
