"""`explain`: the latents active at each token of a prompt and the attribution of a target token's logit,
with each latent's dashboard link and top tokens when a report of the SAE exists."""

from __future__ import annotations

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


def explain(
    sae_path: str | Path,
    prompt: str,
    target: str | None = None,
    model_name: str | None = None,
    top: int = 5,
    n_total: int = 10,
    report: Path | None = None,
) -> Explanation:
    """Latents per position and what drives `target` (its first token; default the top prediction) at the
    prompt's last position."""
    model, sae = model_and_sae(sae_path, model_name)
    hook = sae.metadata["hook_name"]
    toks, _ = model.to_tokens(prompt, prepend_bos=True)
    acts_name = f"{hook}.hook_sae_acts_post"
    logits, cache = SplicedModel(model, [sae], use_error_term=True).run_with_cache(toks, [acts_name])
    acts = np.asarray(cache[acts_name][0])  # (seq, d_sae)
    order = np.argsort(-acts, axis=1, kind="stable")[:, :top]
    per_position = [[(int(i), float(acts[p, i])) for i in order[p] if acts[p, i] > 0] for p in range(len(acts))]
    if target is None:
        target_id = int(np.argmax(np.asarray(logits[0, -1])))
    else:
        ids = model.tokenizer.encode(target, add_special_tokens=False).ids
        if not ids:
            raise ValueError(f"target {target!r} has no tokens")
        target_id = ids[0]
    att = attribute(model, sae, toks[0], target_id, -1, n_top=max(top * 4, 10), n_total=n_total)
    top_tokens, links = {}, {}
    if report is not None:
        from saelab.inspect.site import read_top_tokens

        top_tokens = read_top_tokens(report)
        page = (Path(report) / "latent.html").resolve()
        links = {e.latent: f"{page.as_uri()}?i={e.latent}" for e in att.effects}
    texts = [model.tokenizer.decode([int(t)]) for t in toks[0]]
    return Explanation(hook, texts, per_position, model.tokenizer.decode([target_id]), att, top_tokens, links)
