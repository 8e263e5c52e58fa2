"""Subcommands `saelab inspect`, `saelab inspect serve` and `saelab inspect feature`: parse and dispatch only."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from saelab.inspect.config import InspectConfig
    from saelab.runtime.cliargs import add_config_command

    what = "feature dashboards of every latent as a static site (REPORT/index.html)"
    add_config_command(sub, "inspect", InspectConfig, _inspect, help=what, positional="sae")

    s = sub.add_parser("inspect serve", help="serve a report on 127.0.0.1 (the pages also open from disk)")
    s.add_argument("report", help="report directory written by `saelab inspect`")
    s.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks a free one)")
    s.set_defaults(fn=_serve)

    f = sub.add_parser("inspect feature", help="one latent's dashboard in the terminal")
    f.add_argument("sae", help="training run (checkpoints/NAME) or SAELens-format SAE directory")
    f.add_argument("latent", type=int, help="latent index")
    f.add_argument("--store", required=True, help="activation store of the SAE's model and hook")
    f.add_argument("--tokens", type=int, default=100_000, help="tokens of the store to scan (default 100000)")
    f.add_argument("--hook", help="hook point in the store (default: the SAE's)")
    f.add_argument("--model", help="model for tokens and logits (default: the store's)")
    f.add_argument("--top-k", type=int, default=10, help="top contexts shown (default 10)")
    f.set_defaults(fn=_feature)


def _inspect(a: argparse.Namespace) -> None:
    from saelab.inspect.config import InspectConfig
    from saelab.inspect.run import run
    from saelab.runtime.cliargs import config_from_args

    result = run(config_from_args(InspectConfig, a))
    print(
        f"{result['latents']:,} latents over {result['tokens']:,} tokens in {result['seconds']} s "
        f"({result['dead']:,} never fired)"
    )
    print(f"report: {result['index']}  (open it, or `{result['serve']}`)")


def _serve(a: argparse.Namespace) -> None:
    from saelab.inspect.serve import address, make_server

    server = make_server(a.report, a.port)
    print(f"serving {a.report} at {address(server)} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _feature(a: argparse.Namespace) -> None:
    import numpy as np

    from saelab.inspect.compat import open_inputs
    from saelab.inspect.config import InspectConfig
    from saelab.inspect.run import dashboards
    from saelab.inspect.terminal import print_latent
    from saelab.runtime.cliargs import build_config

    given = {"sae": a.sae, "store": a.store, "hook": a.hook, "model": a.model, "tokens": a.tokens, "top_k": a.top_k}
    labels = {"sae": "SAE", "store": "--store", "hook": "--hook", "model": "--model", "tokens": "--tokens"}
    cfg = build_config(InspectConfig, given=given, command="feature", labels=labels | {"top_k": "--top-k"})
    inputs = open_inputs(cfg.sae, cfg.store, cfg.hook, cfg.model)
    if not 0 <= a.latent < inputs.sae.cfg.d_sae:
        raise ValueError(f"latent {a.latent} is out of range: the SAE has {inputs.sae.cfg.d_sae} latents")
    print_latent(dashboards(cfg, inputs, latents=np.array([a.latent])), a.latent)
