"""Subcommands `saelab model info` and `saelab model generate`: parse, load the model, print."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `model` subcommand group to the `saelab` subparsers."""
    model = sub.add_parser("model", help="inspect and run a model").add_subparsers(dest="model_cmd", required=True)
    info = model.add_parser("info", help="family, sizes, parameter count and hook point names of a model")
    info.add_argument("model", help="alias (smollm2-135m), GGUF file, Hugging Face directory or hub id")
    info.add_argument("--json", action="store_true", help="print JSON, including every hook point name")
    info.set_defaults(fn=_info)
    gen = model.add_parser("generate", help="greedy continuation of a prompt (checks weights and tokenizer)")
    gen.add_argument("model", help="alias, GGUF file, Hugging Face directory or hub id")
    gen.add_argument("prompt", help="text to continue")
    gen.add_argument("--max-new-tokens", type=int, default=12, help="tokens to generate (default 12)")
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

    m = Model.load(a.model, dtype=a.dtype)
    print(a.prompt + m.generate(a.prompt, a.max_new_tokens))
