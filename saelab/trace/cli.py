"""`saelab trace "PROMPT" --transcoders DIR [--target TOKEN] [--out DIR]`: parse, run, print a summary."""

from __future__ import annotations

import argparse

from saelab.runtime.cliargs import add_config_command, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `trace` subcommand (flags generated from TraceConfig, PROMPT positional)."""
    from saelab.trace.config import TraceConfig

    add_config_command(
        sub,
        "trace",
        TraceConfig,
        _trace,
        help="a prompt's attribution graph through a replacement model (circuit-tracer's definitions and JSON)",
        description="The attribution graph of a prompt through per-layer or cross-layer transcoders: active "
        "features, error nodes, tokens and logits, edges of the linearised model; pruned, scored (replacement, "
        "completeness) and written as circuit-tracer's frontend JSON into --out (docs/trace.md).",
        positional="prompt",
    )


def _trace(a: argparse.Namespace) -> None:
    from saelab.trace.config import TraceConfig
    from saelab.trace.run import run

    s = run(config_from_args(TraceConfig, a))
    logits = ", ".join(f"{d['token']!r} {d['p']:.3f}" for d in s["logits"])
    kept = "" if s["n_active"] == s["n_features"] else f" (the {s['n_features']} most influential kept)"
    print(f"{s['n_tokens']} tokens, {s['n_active']} active features{kept}, logits: {logits}")
    print(f"pruned: {s['kept_nodes']} nodes, {s['kept_edges']} edges of {s['n_nodes']} nodes")
    print(f"replacement score {s['replacement_score']:.3f}, completeness {s['completeness_score']:.3f}")
    print(f"{s['seconds']['attribute']:.1f} s attribution, {s['seconds']['total']:.1f} s in all")
    print(f"graph: {s['graph']}")
