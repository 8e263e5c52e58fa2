"""Which latents of a trained SAE steer generation towards their own top tokens?

For every latent whose dashboard top-activating tokens include a word (three or more letters), add
`m * max_act * W_dec[i]` (max_act: the latent's largest activation in the report; m from --multipliers) to the
SAE's hook at every position after BOS, continue each prompt greedily, and count a hit when one of the
latent's top tokens starts a word of the steered continuation and no word of that prompt's clean one. All
latents and multipliers for one prompt run as rows of one batched, jitted generation.

    python experiments/steering_search.py checkpoints/demo results/demo/dashboards --out results/steering
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.inspect.site import read_report_index
from saelab.models import HookContext
from saelab.models.generate import generate_model
from saelab.spliced.loading import model_and_sae

PROMPTS = ("The best thing about the weekend is", "Here is a short story:", "def main():\n")
WORD = re.compile(r"[A-Za-z]{3,}")


class RowSteer(NamedTuple):
    """Context adding one direction per batch row, (batch, 1, d_in), at positions >= 1 of `hook`; the
    directions come in as the loop's argument, so all rows share one compiled program."""

    hook: str

    def __call__(self, directions: jax.Array) -> HookContext:
        def add(x: jax.Array, positions: jax.Array) -> jax.Array:
            return x + jnp.where((positions >= 1)[..., None], directions.astype(x.dtype), 0)

        add.needs_positions = True
        return HookContext(hooks={self.hook: add})


def words(tokens: list[str]) -> list[str]:
    """The word-like top tokens, stripped and lower-cased."""
    return sorted({t.strip().lower() for t in tokens if WORD.fullmatch(t.strip())})


def has_word(text: str, word: str) -> bool:
    """`word` in `text` as a whole word or the start of one (case-insensitive): 'connect' in 'connection'."""
    return re.search(rf"(?<![A-Za-z]){re.escape(word)}", text, re.IGNORECASE) is not None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sae", help="training run or SAELens-format SAE directory")
    p.add_argument("report", type=Path, help="the SAE's dashboard report (saelab inspect)")
    p.add_argument("--out", type=Path, default=Path("results/steering"))
    p.add_argument("--multipliers", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    p.add_argument("--latents", type=int, nargs="*", default=[], help="these latents only")
    p.add_argument("--sample", type=int, default=0, help="a random sample of N word latents (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample")
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()

    model, sae = model_and_sae(a.sae)
    hook = sae.metadata["hook_name"]
    index = read_report_index(a.report)
    per_latent = zip(index["latent"], index["top_tokens"], index["max"], strict=True)
    cand = [(int(lat), words(toks), float(mx)) for lat, toks, mx in per_latent]
    cand = [c for c in cand if c[1]]
    if a.latents:
        cand = [c for c in cand if c[0] in set(a.latents)]
    if a.sample and a.sample < len(cand):
        keep = np.random.default_rng(a.seed).choice(len(cand), a.sample, replace=False)
        cand = [cand[i] for i in sorted(keep)]
    rows = [(lat, w, m * mx, m) for lat, w, mx in cand for m in a.multipliers]
    print(f"{len(cand)} latents with word-like top tokens, {len(rows)} (latent, multiplier) rows per prompt")
    w_dec = np.asarray(sae.params.W_dec)
    stops = () if model.eos_id is None else (model.eos_id,)
    t0 = time.perf_counter()
    hits: dict[int, list[dict]] = {}
    for prompt in PROMPTS:
        toks, mask = model.to_tokens([prompt], prepend_bos=True)
        clean = model.generate(prompt, a.new_tokens, prepend_bos=True)
        for s in range(0, len(rows), a.batch):
            chunk = rows[s : s + a.batch]
            pad = a.batch - len(chunk)
            dirs = np.stack([alpha * w_dec[lat] for lat, _, alpha, _ in chunk] + [np.zeros_like(w_dec[0])] * pad)
            out = generate_model(
                model,
                np.repeat(toks, a.batch, 0),
                np.repeat(mask, a.batch, 0),
                a.new_tokens,
                stop_ids=stops,
                context=RowSteer(hook),
                context_args=jnp.asarray(dirs[:, None, :]),
            )
            for (lat, w, alpha, m), row, n in zip(
                chunk, np.asarray(out.tokens)[: len(chunk)], np.asarray(out.lengths), strict=False
            ):
                text = model.tokenizer.decode([int(t) for t in row[:n] if int(t) not in stops])
                found = [x for x in w if has_word(text, x) and not has_word(clean, x)]
                if found:
                    hits.setdefault(lat, []).append(
                        dict(prompt=prompt, multiplier=m, alpha=alpha, found=found, clean=clean, steered=text)
                    )
        print(f"{prompt!r}: {len(hits)} latents with a hit so far ({time.perf_counter() - t0:.0f} s)")
    a.out.mkdir(parents=True, exist_ok=True)
    result = {
        "sae": str(a.sae),
        "hook": hook,
        "prompts": PROMPTS,
        "multipliers": a.multipliers,
        "n_latents": len(cand),
        "n_hit": len(hits),
        "hits": {str(k): {"top_tokens": dict((c[0], c[1]) for c in cand)[k], "runs": v} for k, v in hits.items()},
    }
    (a.out / "search.json").write_text(json.dumps(result, indent=1))
    best = sorted(hits, key=lambda k: (-len({h["prompt"] for h in hits[k]}), min(h["multiplier"] for h in hits[k])))
    for lat in best[:15]:
        h = min(hits[lat], key=lambda h: h["multiplier"])
        print(
            f"latent {lat} x{h['multiplier']:g} found {h['found']} in {h['steered']!r} (prompts hit: "
            f"{len({x['prompt'] for x in hits[lat]})})"
        )
    print(f"RESULT latents={len(cand)} hit={len(hits)} share={len(hits) / max(len(cand), 1):.3f}")


if __name__ == "__main__":
    main()
