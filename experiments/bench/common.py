"""Shared helpers for the benchmark scripts: timing, real text tokens, JSON results and the RESULT line."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from saelab.runtime.machine import context_fields, machine

RESULTS = Path(__file__).resolve().parents[2] / "results" / "bench"


class StopForward(Exception):
    """Raised by a torch forward hook to end the pass at the hooked layer (how peers exit early)."""


def torch_model(name: str):
    """The same checkpoint in transformers on torch (float32, eval mode): the peer of the JAX model."""
    import torch
    from transformers import AutoModelForCausalLM

    from saelab.models.loading import resolve

    path = resolve(name)
    kw = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
    return AutoModelForCausalLM.from_pretrained(str(path.parent if kw else path), dtype=torch.float32, **kw).eval()


def tl_config(c, model_name: str = "SmolLM2-135M"):
    """TransformerLens's config of a Llama-family transformers config `c` (float32, CPU, no weight processing
    assumed): the TransformerLens side of the peers that run SmolLM2 in TransformerLens."""
    import torch
    from transformer_lens import HookedTransformerConfig

    return HookedTransformerConfig(
        n_layers=c.num_hidden_layers, d_model=c.hidden_size, d_head=c.hidden_size // c.num_attention_heads,
        n_heads=c.num_attention_heads, n_key_value_heads=c.num_key_value_heads, d_mlp=c.intermediate_size,
        d_vocab=c.vocab_size, n_ctx=min(c.max_position_embeddings, 8192), act_fn="silu", normalization_type="RMS",
        positional_embedding_type="rotary", rotary_dim=c.hidden_size // c.num_attention_heads,
        rotary_base=float(getattr(c, "rope_theta", None) or c.rope_parameters["rope_theta"]), gated_mlp=True,
        final_rms=True, eps=c.rms_norm_eps, original_architecture="LlamaForCausalLM", rotary_adjacent_pairs=False,
        dtype=torch.float32, model_name=model_name, device="cpu",
    )  # fmt: skip


def timeit(fn: Callable[[], object], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median and min seconds of `fn()` over `reps` runs after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "reps": reps}


def docstring_tokens(tokenizer, n_tokens: int) -> np.ndarray:
    """`n_tokens` token ids of real text: standard-library docstrings, concatenated."""
    from saelab.data import open_corpus

    ids: list[int] = []
    for doc in open_corpus("python-docs"):
        ids.extend(tokenizer.encode(doc.text, add_special_tokens=False).ids)
        if len(ids) >= n_tokens:
            break
    return np.asarray(ids[:n_tokens], np.int32)


def parser(doc: str | None, name: str, quick: str, **ints: int) -> argparse.ArgumentParser:
    """The flags every bench shares: --model, --quick (what it shrinks: `quick`), --out (results/bench/NAME.json),
    then one integer flag per keyword of `ints` (`d_sae=4608` is `--d-sae`, default 4608)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--quick", action="store_true", help=f"{quick} (under two minutes)")
    ap.add_argument("--out", help=f"JSON path (default results/bench/{name}.json)")
    for flag, default in ints.items():
        ap.add_argument("--" + flag.replace("_", "-"), type=int, default=default)
    ap.set_defaults(bench=name)
    return ap


def write(name: str, result: dict, out: str | None) -> Path:
    """Write `result` as JSON (with what it ran on, when the script did not record it) and return the path."""
    result.setdefault("machine", machine())
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path


def finish(args: argparse.Namespace, result: dict, *keys: str, **kv: object) -> Path:
    """Write `result` (see `write`) for the bench of `args` (its `bench` name and `--out`), then print
    `wrote PATH` and the RESULT line of `result`'s entries named in `keys` and of `kv`; returns the path."""
    path = write(args.bench, result, args.out)
    print(f"wrote {path}")
    print(result_line(**{k: result[k] for k in keys}, **kv))
    return path


def result_line(**kv: object) -> str:
    """`RESULT key=value ...`: the measured values, then the machine's context (CPU, ISA, cores, versions)."""

    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    kv = {**kv, **context_fields(machine())}
    return "RESULT " + " ".join(f"{k}={fmt(v)}" for k, v in kv.items())
