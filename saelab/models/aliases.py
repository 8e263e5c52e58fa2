"""Model names as TransformerLens and SAELens configs write them -> Hugging Face ids, in one table.

SAELens SAEs name their model the TransformerLens way (`gpt2-small`, `gemma-2-2b`, `pythia-70m-deduped`);
saelab loads models by Hugging Face id, so `hf_id` translates. Entries follow TransformerLens's
MODEL_ALIASES (transformer_lens/supported_models.py) for the families saelab runs, plus the lower-case
Llama names TransformerLens has none for. Lookup ignores case; a name not in the table is returned as is.
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
_LOWER = {k.lower(): v for k, v in TL_ALIASES.items()}


def hf_id(name: str) -> str:
    """The Hugging Face id a TransformerLens-style model name stands for (`gpt2-small` -> `gpt2`)."""
    return _LOWER.get(name.lower(), name)
