"""The `saelab` command line: parses arguments and dispatches to the stage functions, nothing more."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int | None]


def _model_info(a: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saelab.models import BLOCK_HOOKS, Model

    m = Model.load(a.model)
    info = m.info()
    if a.json:
        print(json.dumps(info | {"hook_points": m.hook_names()}, indent=2))
        return
    t = Table(title=f"model {a.model}", show_header=False)
    for k, v in info.items():
        t.add_row(k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
    t.add_row("hook points", f"blocks.{{0..{m.cfg.n_layers - 1}}}.{{{', '.join(BLOCK_HOOKS)}}}")
    Console().print(t)


def _model_generate(a: argparse.Namespace) -> None:
    from saelab.models import Model

    m = Model.load(a.model, dtype=a.dtype)
    print(a.prompt + m.generate(a.prompt, a.max_new_tokens))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="saelab", description=__doc__ and "Sparse-autoencoder workbench on JAX.")
    sub = p.add_subparsers(dest="command", required=True)

    model = sub.add_parser("model", help="inspect and run a model").add_subparsers(dest="model_cmd", required=True)
    info = model.add_parser("info", help="family, sizes, parameter count and hook point names of a model")
    info.add_argument("model", help="alias (smollm2-135m), GGUF file, Hugging Face directory or hub id")
    info.add_argument("--json", action="store_true", help="print JSON, including every hook point name")
    info.set_defaults(fn=_model_info)
    gen = model.add_parser("generate", help="greedy continuation of a prompt (checks weights and tokenizer)")
    gen.add_argument("model", help="alias, GGUF file, Hugging Face directory or hub id")
    gen.add_argument("prompt", help="text to continue")
    gen.add_argument("--max-new-tokens", type=int, default=12, help="tokens to generate (default 12)")
    gen.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="compute dtype")
    gen.set_defaults(fn=_model_generate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"saelab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
