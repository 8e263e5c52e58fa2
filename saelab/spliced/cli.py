"""Subcommands `saelab splice steer` and `saelab splice explain` (an SAE spliced into its model): parse, call
saelab.spliced, print."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from saelab.models.cli import add_generating_command

    splice = sub.add_parser("splice", help="an SAE spliced into its model: steer generation, explain a prediction")
    sub = splice.add_subparsers(dest="splice_cmd", required=True, metavar="COMMAND")
    st = add_generating_command(sub, "steer", "clean and steered continuations of a prompt, side by side")
    st.add_argument("sae", help="training run (checkpoints/NAME) or SAELens-format SAE directory")
    st.add_argument("prompt", help="the prompt to continue")
    st.add_argument("--latent", type=int, action="append", required=True, help="latent to steer with (repeatable)")
    st.add_argument(
        "--alpha", type=float, action="append", help="added multiple of the latent's decoder row (one per --latent)"
    )
    st.add_argument("--clamp", type=float, action="append", help="clamp the latent's activation to this value instead")
    st.add_argument("--from-position", type=int, default=1, help="first token position edited (default 1: after BOS)")
    st.add_argument("--model", help="model (default: the one the SAE names)")
    st.set_defaults(fn=_steer)

    ex = sub.add_parser("explain", help="the latents active at each position of a prompt, and what drives a target")
    ex.add_argument("sae", help="training run (checkpoints/NAME) or SAELens-format SAE directory")
    ex.add_argument("prompt", help="the prompt to explain (not empty)")
    ex.add_argument(
        "--target",
        help="target token, one token (e.g. ' Paris'); its logit as the next token is explained; default: the "
        "model's top prediction",
    )
    ex.add_argument("--top", type=int, default=5, help="latents shown per position (default 5)")
    ex.add_argument("--n-total", type=int, default=10, help="candidates whose total effect is measured by ablation")
    ex.add_argument(
        "--report",
        type=Path,
        help="dashboard report of this SAE (links and top tokens per latent); default: the newest report of this "
        "SAE that `saelab inspect` wrote under report/ or results/",
    )
    ex.add_argument("--model", help="model (default: the one the SAE names)")
    ex.set_defaults(fn=_explain)


def _steer(a: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saelab.models.cli import generation_options
    from saelab.spliced.loading import model_and_sae
    from saelab.spliced.steer import steer

    if (a.alpha is None) == (a.clamp is None):
        raise ValueError("give --alpha (add the decoder row) or --clamp (set the activation), one per --latent")
    model, sae = model_and_sae(a.sae, a.model)
    out = steer(
        model,
        sae,
        a.prompt,
        a.latent,
        a.alpha or (),
        a.clamp,
        from_position=a.from_position,
        **generation_options(a),
    )
    how = "clamped to " + ", ".join(map(str, a.clamp)) if a.clamp else "alpha " + ", ".join(map(str, a.alpha))
    t = Table(title=f"{a.prompt!r} at {sae.metadata.get('hook_name')}", show_lines=True)
    t.add_column("clean")
    t.add_column(f"latent {', '.join(map(str, a.latent))} {how}")
    t.add_row(out.clean, out.steered)
    Console().print(t)


def _explain(a: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saelab.spliced.explain import explain

    ex = explain(a.sae, a.prompt, a.target, a.model, a.top, a.n_total, a.report)
    con = Console()
    t = Table(title=f"top latents per position ({ex.hook})")
    for col in ("pos", "token", "latents (activation)"):
        t.add_column(col)
    for p, (tok, lats) in enumerate(zip(ex.tokens, ex.per_position, strict=True)):
        t.add_row(str(p), repr(tok), "  ".join(f"{i} ({v:.2f})" for i, v in lats))
    con.print(t)
    att = ex.attribution
    t = Table(
        title=f"what drives {ex.target!r} (logit {att.logit:.2f}) after position {att.position}",
        caption="gradient: activation x d(logit)/d(activation); direct: through the final norm and unembedding; "
        "total: clean minus ablated logit",
    )
    dash = ("top tokens", "dashboard") if ex.report is not None else ()
    said = ("explanation",) if ex.explanations else ()  # from `saelab autointerp`
    for col in ("pos", "latent", "act", "gradient", "direct", "total", *said, *dash):
        t.add_column(col)
    for e in att.effects:
        fmt = lambda v: "" if v != v else f"{v:+.3f}"
        row = [str(e.position), str(e.latent), f"{e.activation:.3f}", fmt(e.gradient), fmt(e.direct), fmt(e.total)]
        if said:
            row.append(ex.explanations.get(e.latent, ""))
        if dash:
            row += [" ".join(repr(s) for s in ex.top_tokens.get(e.latent, [])), ex.links.get(e.latent, "")]
        t.add_row(*row)
    con.print(t)
    if ex.report is not None:
        print(
            f"top tokens and dashboard links: {ex.report}" + ("" if a.report else " (found; --report chooses another)")
        )
    else:
        print(
            f"no dashboard report of {a.sae} under report/ or results/, so no top tokens or dashboard links: build "
            f"one with `saelab inspect {a.sae} --store STORE --out DIR` and pass --report DIR"
        )
