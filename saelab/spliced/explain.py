"""`explain`: the latents active at each token of a prompt and the attribution of a target token's logit,
with each latent's dashboard link and top tokens when a report of the SAE exists: the one given, or one that
`saelab inspect` wrote for this SAE where it writes reports (`report/`, `results/*/dashboards` as the
experiments name them), found by the SAE its `meta` names; and each latent's explanation when `saelab
autointerp` kept one beside the SAE (SAE/autointerp.json)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from saelab.spliced.attribution import Attribution, attribute
from saelab.spliced.loading import model_and_sae
from saelab.spliced.model import SplicedModel


class Explanation(NamedTuple):
    hook: str
    tokens: list[str]  # the prompt's tokens as text, BOS first
    per_position: list[list[tuple[int, float]]]  # (latent, activation) by activation, per position
    target: str
    attribution: Attribution
    top_tokens: dict[int, list[str]]  # from the report, empty without one
    links: dict[int, str]  # latent -> its dashboard page, empty without a report
    report: Path | None = None  # the dashboard report read (given, or found for this SAE); None: none found
    explanations: dict[int, str] = {}  # latent -> its `saelab autointerp` explanation (SAE/autointerp.json)


def explain(
    sae_path: str | Path,
    prompt: str,
    target: str | None = None,
    model_name: str | None = None,
    top: int = 5,
    n_total: int = 10,
    report: Path | None = None,
) -> Explanation:
    """Latents per position and what drives `target` (one token; default the top prediction) as the next
    token after the prompt. A target of several tokens is an error naming them. Without `report`, a report
    of this SAE found by `find_report` is used."""
    if not prompt:
        raise ValueError("the prompt is empty; give the text whose next token to explain")
    model, sae = model_and_sae(sae_path, model_name)
    hook = sae.metadata["hook_name"]
    target_id = None if target is None else _one_token(model, target)  # before any forward pass
    toks, _ = model.to_tokens(prompt, prepend_bos=True)
    acts_name = f"{hook}.hook_sae_acts_post"
    logits, cache = SplicedModel(model, [sae], use_error_term=True).run_with_cache(toks, [acts_name])
    acts = np.asarray(cache[acts_name][0])  # (seq, d_sae)
    order = np.argsort(-acts, axis=1, kind="stable")[:, :top]
    per_position = [[(int(i), float(acts[p, i])) for i in order[p] if acts[p, i] > 0] for p in range(len(acts))]
    if target_id is None:
        target_id = int(np.argmax(np.asarray(logits[0, -1])))
    att = attribute(model, sae, toks[0], target_id, -1, n_top=max(top * 4, 10), n_total=n_total)
    top_tokens, links = {}, {}
    report = report if report is not None else find_report(sae_path)
    if report is not None:
        from saelab.inspect.site import read_top_tokens

        top_tokens = read_top_tokens(report)
        page = (Path(report) / "latent.html").resolve()
        links = {e.latent: f"{page.as_uri()}?i={e.latent}" for e in att.effects}
    texts = [model.tokenizer.decode([int(t)]) for t in toks[0]]
    target_text = model.tokenizer.decode([target_id])
    from saelab.inspect.autointerp import explanations, find_autointerp

    expl = explanations(find_autointerp(sae_path))
    return Explanation(hook, texts, per_position, target_text, att, top_tokens, links, report, expl)


def _one_token(model, target: str) -> int:
    """The id of `target` when it is one token; a ValueError naming its tokens otherwise."""
    ids = model.tokenizer.encode(target, add_special_tokens=False).ids
    if not ids:
        raise ValueError(f"target {target!r} has no tokens; give the token to explain, e.g. --target ' Paris'")
    if len(ids) > 1:
        parts = [model.tokenizer.decode([i]) for i in ids]
        raise ValueError(
            f"target {target!r} is {len(ids)} tokens {parts}; explain attributes one next-token logit: give "
            f"--target {parts[0]!r} (its first token), or add {parts[:-1]!r} to the prompt and give --target "
            f"{parts[-1]!r}"
        )
    return ids[0]


REPORT_ROOTS = (Path("report"), Path("results"))  # where `saelab inspect` and the experiments write reports


def find_report(sae_path: str | Path, roots: Iterable[Path] = REPORT_ROOTS) -> Path | None:
    """The newest dashboard report (`saelab inspect` output) built from this SAE under `roots`: a report whose
    data/meta.js names this SAE (the run or its export); None when there is none."""
    from saelab.sae.saelens_io import sae_dir

    try:
        mine = {Path(sae_path).resolve(), sae_dir(sae_path).resolve()}
    except OSError:
        return None
    found = []
    for root in roots:
        metas = [root / "data" / "meta.js", *root.glob("*/data/meta.js"), *root.glob("*/*/data/meta.js")]
        for meta in metas:
            named = _report_sae(meta)
            if named is not None and named.resolve() in mine:
                found.append(meta.parent.parent.resolve())
    return max(found, key=lambda p: (p / "data" / "meta.js").stat().st_mtime) if found else None


def _report_sae(meta: Path) -> Path | None:
    """The SAE path a report's data/meta.js names (as written: relative to where inspect ran)."""
    try:
        text = meta.read_text(encoding="utf-8")
        sae = json.loads(text[text.index(",") + 1 : text.rindex(");")]).get("sae")
    except (OSError, ValueError):
        return None
    return Path(sae) if isinstance(sae, str) else None
