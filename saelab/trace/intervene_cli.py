"""`saelab trace intervene PROMPT --transcoders DIR --set L:F[@P]=V --scale L:F[@P]=S`: the replacement
model's continuation of a prompt without and with feature (or error-node) edits, side by side. Parse, call
saelab.trace.intervene, print."""

from __future__ import annotations

import argparse
import re

from saelab.trace.intervene import ALL, ERROR, Edit

EDIT = re.compile(r"^(?P<layer>\d+):(?P<feature>\d+|all|error)(?:@(?P<position>\d+))?=(?P<amount>[-+0-9.eE]+)$")
SPEC = "L:F[@P]=X (layer L, feature index F or 'all' or 'error', position P, default every position)"


def parse_edit(spec: str, how: str) -> Edit:
    """An `Edit` from `L:F[@P]=X`: `how` "set" makes X the value, "scale" the factor."""
    m = EDIT.match(spec.strip())
    if m is None:
        raise ValueError(f"--{how} {spec!r}: expected {SPEC}, e.g. 3:1207@5=10 or 2:error=0")
    try:
        amount = float(m["amount"])
    except ValueError:
        raise ValueError(f"--{how} {spec!r}: {m['amount']!r} is not a number") from None
    f = m["feature"]
    feature = f if f in (ALL, ERROR) else int(f)
    position = None if m["position"] is None else int(m["position"])
    value, scale = (amount, None) if how == "set" else (None, amount)
    return Edit(int(m["layer"]), feature, position, value, scale)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `trace intervene` (wired as `saelab trace intervene` through saelab.cli's SUBCOMMANDS)."""
    from saelab.models.cli import add_generating_command

    p = add_generating_command(
        sub, "trace intervene", "the replacement model's continuation without and with feature edits"
    )
    p.add_argument("prompt", help="the prompt to continue (not empty)")
    p.add_argument(
        "--transcoders",
        required=True,
        help="a multi-SAE run of transcoders ([each_layer]) or a circuit-tracer folder (transcoder set or CLT)",
    )
    p.add_argument("--set", action="append", default=[], metavar="L:F[@P]=V", help=f"set an activation: {SPEC}")
    p.add_argument("--scale", action="append", default=[], metavar="L:F[@P]=S", help=f"multiply an activation: {SPEC}")
    p.add_argument(
        "--error-terms",
        action="store_true",
        help="add each layer's error (MLP output minus transcoder output), so no edit means the clean model; "
        "needed to scale error nodes",
    )
    p.add_argument("--model", help="model (default: the one the transcoders name, else smollm2-135m)")
    p.set_defaults(fn=_intervene)


def _intervene(a: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saelab.evals.replacement_run import load_transcoder_set
    from saelab.models import Model
    from saelab.models.aliases import LOCAL_ALIASES
    from saelab.models.cli import generation_options
    from saelab.trace.intervene import generate

    edits = [parse_edit(s, "set") for s in a.set] + [parse_edit(s, "scale") for s in a.scale]
    if not edits:
        raise ValueError("give at least one edit: --set L:F[@P]=V or --scale L:F[@P]=S")
    ts = load_transcoder_set(a.transcoders)
    local = {hf.lower(): alias for alias, hf in LOCAL_ALIASES.items()}
    name = a.model or local.get((ts.model_name or "").lower(), ts.model_name) or "smollm2-135m"
    model = Model.load(name)
    out = generate(model, ts.replacement, a.prompt, edits, a.error_terms, **generation_options(a))
    what = ", ".join(a.set + [f"{s} (scale)" for s in a.scale])
    errors = "with error terms" if a.error_terms else "without error terms"
    t = Table(title=f"{a.prompt!r}: replacement model of {a.transcoders} on {name}, {errors}", show_lines=True)
    t.add_column("no edits")
    t.add_column(f"edited: {what}")
    t.add_row(out.clean, out.edited)
    Console().print(t)
