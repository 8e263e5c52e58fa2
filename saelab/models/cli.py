"""Subcommands `saelab model info` and `saelab model generate`: parse, load the model, print."""

from __future__ import annotations

import argparse
import json
from typing import Any

from saelab.models.generate import DEFAULT_NEW_TOKENS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `model` subcommand group to the `saelab` subparsers."""
    model = sub.add_parser("model", help="inspect and run a model").add_subparsers(dest="model_cmd", required=True)
    info = model.add_parser("info", help="family, sizes, parameter count and hook point names of a model")
    info.add_argument("model", help="alias (smollm2-135m), GGUF file, Hugging Face directory or hub id")
    info.add_argument("--json", action="store_true", help="print JSON, including every hook point name")
    info.set_defaults(fn=_info)
    gen = add_generating_command(model, "generate", "continue a prompt (greedy by default; KV cache)")
    gen.add_argument("model", help="alias, GGUF file, Hugging Face directory or hub id")
    gen.add_argument("prompt", help="text to continue (not empty)")
    gen.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="compute dtype")
    gen.set_defaults(fn=_generate)


def _info(a: argparse.Namespace) -> None:
    from saelab.models import BLOCK_HOOKS, Model
    from saelab.runtime.console import print_table

    m = Model.load(a.model)
    info = m.info()
    if a.json:
        print(json.dumps(info | {"hook_points": m.hook_names()}, indent=2))
        return
    hooks = f"blocks.{{0..{m.cfg.n_layers - 1}}}.{{{', '.join(BLOCK_HOOKS)}}}"
    print_table(f"model {a.model}", [*info.items(), ("hook points", hooks)])


def _generate(a: argparse.Namespace) -> None:
    from saelab.models import Model

    if not a.prompt:
        raise ValueError("the prompt is empty; give some text to continue, e.g. saelab model generate MODEL 'Once'")
    m = Model.load(a.model, dtype=a.dtype)
    print(a.prompt + m.generate(a.prompt, **generation_options(a)))


GENERATION = ("max_new_tokens", "temperature", "top_k", "top_p", "seed")
GENERATION_DEFAULTS = (
    f"up to {DEFAULT_NEW_TOKENS} new tokens, greedy, the prompt after the model's BOS token as in training (when "
    "it has one), the same defaults as Model.generate and SplicedModel.generate"
)


def add_generating_command(sub: argparse._SubParsersAction, name: str, what: str) -> argparse.ArgumentParser:
    """A subcommand that generates (`model generate`, `splice steer`), its `--help` stating the generation
    defaults, with the length and sampling flags of `add_generation_flags`."""
    p = sub.add_parser(name, help=what, description=f"{what[0].upper()}{what[1:]}: {GENERATION_DEFAULTS}.")
    add_generation_flags(p)
    return p


def add_generation_flags(p: argparse.ArgumentParser) -> None:
    """The flags of a generating command (`model generate`, `splice steer`): length and sampling, with the
    defaults every entry point shares."""
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_NEW_TOKENS,
        help=f"tokens to generate (default {DEFAULT_NEW_TOKENS})",
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default)")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample among the smallest set of tokens with this probability")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")


def generation_options(a: argparse.Namespace) -> dict[str, Any]:
    """The values of the flags `add_generation_flags` adds, as the keywords generation takes."""
    return {name: getattr(a, name) for name in GENERATION}
