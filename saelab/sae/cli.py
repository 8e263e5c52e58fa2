"""Subcommands `saelab sae info PATH_OR_RELEASE [SAE_ID]` (load a published or local SAE and say what it is)
and `saelab sae list` (the published releases saelab knows by name)."""

from __future__ import annotations

import argparse
import difflib
import json
import re
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
    ls = cmds.add_parser("list", help="the published releases known by name: model, hook points, number of SAEs")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(fn=_list)


def releases() -> list[dict[str, Any]]:
    """What `saelab sae list` prints: one row per release of saelab.sae.releases, in its order."""
    from saelab.sae.releases import RELEASES

    rows = []
    for name, r in RELEASES.items():
        ids = list(r.paths) if r.paths is not None else _ids_of_pattern(r.pattern or "", r.example)
        rows.append(
            {
                "release": name,
                "model": r.model,
                "hooks": ", ".join(_hook_patterns(r, ids)),
                "n_saes": len(ids) if ids is not None else None,  # None: any id of `ids_pattern`
                "ids_pattern": None if ids is not None else r.pattern,
                "example_id": r.example,
                "repo": r.repo_id,
                "format": r.format,
            }
        )
    return rows


def _ids_of_pattern(pattern: str, example: str) -> list[str] | None:
    """The ids a pattern release holds when they are `prefix.N` (sparsify's `layers.N`); None otherwise."""
    m = re.fullmatch(r"(.*?)(\d+)", example)
    if m is None or re.search(r"\d", m.group(1)):  # layer_12/width_16k/average_l0_N: not one number per SAE
        return None
    ids = [f"{m.group(1)}{i}" for i in range(1000) if re.fullmatch(pattern, f"{m.group(1)}{i}")]
    return ids or None


def _hook_patterns(release: Any, ids: list[str] | None) -> list[str]:
    """The hook points of a release's SAEs with layer numbers as L (`blocks.L.hook_resid_pre`)."""
    from saelab.sae.formats import gemmascope, sparsify

    hooks: list[str | None]
    if release.format == "saelens" and ids is not None:
        hooks = ids  # SAELens releases name their SAEs by hook
    elif release.format == "gemmascope":
        hooks = [gemmascope.hook_of(Path(release.repo_id) / release.example)]
    elif release.format == "sparsify":
        hooks = [sparsify.hook_of(i) for i in ids or [release.example]]
    elif release.format == "llamascope":  # Llama Scope ids: l{L}{r,a,m}_{width}
        kinds = {"r": "hook_resid_post", "a": "hook_attn_out", "m": "hook_mlp_out"}
        kind = [re.match(r"l\d+([ram])", i) for i in ids or [release.example]]
        hooks = [f"blocks.L.{kinds[m.group(1)]}" for m in kind if m]
    else:
        hooks = [None]
    found = [re.sub(r"^blocks\.\d+\.", "blocks.L.", h) for h in hooks if h]
    return sorted(set(found), key=found.index) or ["(stated in each SAE's files)"]


def _list(a: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = releases()
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    t = Table(title="published SAE releases (load one with `saelab sae info RELEASE SAE_ID`)")
    for col in ("release", "model", "hook points", "SAEs", "example id"):
        t.add_column(col, overflow="fold")
    for r in rows:
        n = str(r["n_saes"]) if r["n_saes"] is not None else "many (ids like the example)"
        t.add_row(r["release"], r["model"], r["hooks"], n, r["example_id"])
    Console().print(t)


def check_release(name: str, sae_id: str | None) -> None:
    """A ValueError naming the closest known release (or SAE id in it) when `name` / `sae_id` is none."""
    from saelab.sae.releases import RELEASES

    if name not in RELEASES:
        close = difflib.get_close_matches(name, list(RELEASES), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown SAE release {name!r}; {hint}known releases: {', '.join(RELEASES)} (`saelab sae list` "
            "describes them); a local SAE is given by its folder"
        )
    paths = RELEASES[name].paths
    if sae_id is not None and paths is not None and sae_id not in paths:
        close = difflib.get_close_matches(sae_id, list(paths), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"SAE id {sae_id!r} is not in release {name!r}; {hint}its ids look like {list(paths)[:6]} "
            f"({len(paths)} in all)"
        )


def describe(target: str, sae_id: str | None = None, norm_scaling_factor: float | None = None) -> dict[str, Any]:
    """What `saelab sae info` prints, as a dict: loads the SAE (fetching a release when online)."""
    from saelab.models.aliases import hf_id
    from saelab.sae import get_architecture, load_pretrained, load_sae
    from saelab.sae.releases import RELEASES

    if not Path(target).exists() and (sae_id is not None or _looks_like_release(target)):
        check_release(target, sae_id)
    if not Path(target).exists() and target not in RELEASES:
        raise FileNotFoundError(
            f"{target} is neither an SAE folder nor a known release; give a run (checkpoints/NAME), an SAE "
            "directory, or a release and an SAE id (`saelab sae list` lists the releases)"
        )
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
    if "k" in type(sae.cfg).model_fields:
        out["k"] = sae.cfg.k
    if note:
        out["note"] = note
    return out


def _looks_like_release(target: str) -> bool:
    """A missing path that is a release name or close to one (a typo is reported as a release, not a path)."""
    from saelab.sae.releases import RELEASES

    return target in RELEASES or bool(difflib.get_close_matches(target, list(RELEASES), n=1, cutoff=0.6))


def _info(a: argparse.Namespace) -> None:
    from saelab.runtime.console import print_table

    info = describe(a.sae, a.sae_id, a.norm_scaling_factor)
    if a.json:
        print(json.dumps(info, indent=2))
        return
    print_table(f"SAE {a.sae}{' ' + a.sae_id if a.sae_id else ''}", info.items())
