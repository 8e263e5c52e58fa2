"""Subcommand `saelab sae info PATH_OR_RELEASE [SAE_ID]`: load a published or local SAE and say what it is."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `sae` subcommand group to the `saelab` subparsers."""
    sae = sub.add_parser("sae", help="published and local SAEs (SAELens, Gemma Scope, Llama Scope, sparsify)")
    cmds = sae.add_subparsers(dest="sae_cmd", required=True)
    info = cmds.add_parser(
        "info", help="format, architecture, hook, model, d_in, d_sae, dtype and input normalisation of an SAE"
    )
    info.add_argument("sae", metavar="PATH_OR_RELEASE", help="an SAE folder or run, or a release name")
    info.add_argument("sae_id", nargs="?", metavar="SAE_ID", help="with a release: the SAE id in it")
    info.add_argument(
        "--norm-scaling-factor",
        type=float,
        help="the dataset constant of a SAELens expected_average_only_in SAE (folded into the weights)",
    )
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(fn=_info)


def describe(target: str, sae_id: str | None = None, norm_scaling_factor: float | None = None) -> dict[str, Any]:
    """What `saelab sae info` prints, as a dict: loads the SAE (fetching a release when online)."""
    from saelab.models.aliases import hf_id
    from saelab.sae import get_architecture, load_pretrained, load_sae
    from saelab.sae.releases import RELEASES

    if sae_id is not None or (target in RELEASES and not Path(target).exists()):
        if sae_id is None:
            raise ValueError(f"{target} is a release; give an SAE id too, e.g. `saelab sae info {target} "
                             f"{RELEASES[target].example}`")  # fmt: skip
        sae = load_pretrained(target, sae_id, runtime_norm=True)
        note = RELEASES[target].note
    else:
        sae = load_sae(target, norm_scaling_factor=norm_scaling_factor, runtime_norm=True)
        note = ""
    model = sae.model_name
    out: dict[str, Any] = {
        "format": sae.format,
        "architecture": sae.cfg.architecture,
        "saelens_architecture": get_architecture(sae.cfg.architecture).saelens_architecture(sae.cfg),
        "hook": sae.hook_name,
        "hook_head_index": sae.hook_head_index,
        "model": model if model is None or hf_id(model) == model else f"{model} (Hugging Face: {hf_id(model)})",
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "dtype": sae.cfg.compute_dtype,
        "apply_b_dec_to_input": sae.cfg.apply_b_dec_to_input,
        "normalisation": sae.norm.describe(),
        "prepend_bos": sae.prepend_bos,
    }
    if "k" in get_architecture(sae.cfg.architecture).fields:
        out["k"] = sae.cfg.k
    if note:
        out["note"] = note
    return out


def _info(a: argparse.Namespace) -> None:
    from saelab.runtime.console import print_table

    info = describe(a.sae, a.sae_id, a.norm_scaling_factor)
    if a.json:
        print(json.dumps(info, indent=2))
        return
    print_table(f"SAE {a.sae}{' ' + a.sae_id if a.sae_id else ''}", info.items())
