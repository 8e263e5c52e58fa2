"""`run_autointerp`: explanations of an SAE's latents from their top-activating contexts and their scores
(detection, fuzzing, embedding), each beside the same scorer given another latent's explanation (the
shuffled control: an informative judge scores the true explanation above it). Writes SAE/autointerp.json and
shows the results on the SAE's dashboard report when one exists."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from saelab.evals.autointerp.config import AutointerpConfig
from saelab.evals.autointerp.examples import LatentExamples, Scan, gather
from saelab.evals.autointerp.explain import Explained, explain, shuffled
from saelab.evals.autointerp.judge import Judge, LocalJudge, make_judge
from saelab.evals.autointerp.scorers import (
    Embedder,
    Score,
    detection_samples,
    fuzzing_samples,
    score_classifier,
    score_embedding,
)
from saelab.inspect import autointerp as site_data
from saelab.inspect.compat import open_inputs


class LatentResult(NamedTuple):
    latent: int
    explanation: Explained
    control_from: int  # the latent whose explanation is this one's control
    scores: dict[str, Score]  # scorer -> with the latent's own explanation
    controls: dict[str, Score]  # scorer -> with the control explanation


class AutointerpResult(NamedTuple):
    latents: list[LatentResult]
    judge: str
    seconds: dict[str, float]  # examples, explain, each scorer, total
    meta: dict[str, Any]  # sae, store, hook, model, config

    def summary(self) -> dict[str, dict[str, float]]:
        """Per scorer: mean score, mean control, and the fraction of latents scoring above their control."""
        out = {}
        for name in self.meta["config"]["scorers"]:
            s = np.array([r.scores[name].score for r in self.latents])
            c = np.array([r.controls[name].score for r in self.latents])
            out[name] = {
                "score": float(np.mean(s)),
                "control": float(np.mean(c)),
                "above_control": float(np.mean(s > c)),
            }
        return out

    def to_json(self) -> dict[str, Any]:
        ai = {
            str(r.latent): {
                "explanation": r.explanation.text,
                "tagged": r.explanation.tagged,
                "control_from": r.control_from,
                "control_explanation": self._explanation_of(r.control_from),
                "scores": {
                    k: {
                        "score": v.score,
                        "control": r.controls[k].score,
                        "n": v.n,
                        "answered": v.answered,
                        "control_answered": r.controls[k].answered,
                    }
                    for k, v in r.scores.items()
                },
            }
            for r in self.latents
        }
        return {"version": site_data.VERSION, "judge": self.judge, **self.meta, "seconds": self.seconds,
                "summary": self.summary(), "latents": ai}  # fmt: skip

    def _explanation_of(self, latent: int) -> str:
        return next(r.explanation.text for r in self.latents if r.latent == latent)


def run_autointerp(
    cfg: AutointerpConfig,
    judge: Judge | None = None,
    embedder: Embedder | None = None,
    progress: bool = True,
) -> AutointerpResult:
    """Explain and score `cfg`'s latents; write cfg.out_path() (and the report's data/autointerp.js).
    `judge` and `embedder` replace the configured ones (tests pass fakes)."""
    t0 = time.perf_counter()
    inputs = open_inputs(cfg.sae, cfg.store_path(), cfg.hook, cfg.model)
    if judge is None:
        local_model = cfg.judge_model or "smollm2-135m"
        judge = (
            LocalJudge(local_model, cfg.judge_batch) if cfg.judge == "local" else make_judge("openai", cfg.judge_model)
        )
    decode = token_texts(inputs.model_name)
    scan = Scan(inputs.sae, inputs.store, inputs.hook, cfg.tokens, cfg.left, cfg.right)
    examples = choose_examples(scan, cfg, decode, progress)
    seconds = {"examples": time.perf_counter() - t0}
    t = time.perf_counter()
    explained = explain(judge, examples, cfg.threshold)
    seconds["explain"] = time.perf_counter() - t
    rng = np.random.default_rng(cfg.seed + 1)
    control = shuffled(len(examples), rng)
    scores: dict[str, tuple[list[Score], list[Score]]] = {}
    for name in cfg.scorers:
        t = time.perf_counter()
        scores[name] = score_all(name, judge, embedder, examples, explained, control, cfg, rng)
        seconds[name] = time.perf_counter() - t
    latents = [
        LatentResult(
            ex.latent,
            explained[i],
            examples[int(control[i])].latent,
            {n: s[0][i] for n, s in scores.items()},
            {n: s[1][i] for n, s in scores.items()},
        )
        for i, ex in enumerate(examples)
    ]
    seconds["total"] = time.perf_counter() - t0
    meta = {"sae": str(cfg.sae), "store": str(inputs.store.path), "hook": inputs.hook, "model": inputs.model_name,
            "config": cfg.model_dump(mode="json")}  # fmt: skip
    result = AutointerpResult(latents, judge.name, {k: round(v, 2) for k, v in seconds.items()}, meta)
    write(result, cfg)
    return result


def choose_examples(scan: Scan, cfg: AutointerpConfig, decode: Callable, progress: bool) -> list[LatentExamples]:
    """The examples of cfg.latents, or of `n_latents` latents drawn at random among those with at least
    `n_test` test and non-activating contexts (candidates: 4x as many, so that rare latents can be passed over)."""
    d_sae = scan.sae.cfg.d_sae
    if cfg.latents is not None:
        bad = [i for i in cfg.latents if not 0 <= i < d_sae]
        if bad:
            raise ValueError(f"latents {bad} are outside [0, {d_sae}) of SAE {cfg.sae}")
        candidates = np.array(sorted(set(cfg.latents)), np.int64)
    else:
        rng = np.random.default_rng(cfg.seed)
        candidates = np.sort(rng.permutation(d_sae)[: min(d_sae, 4 * cfg.n_latents)])
    kw = {"n_explain": cfg.n_explain, "n_test": cfg.n_test, "seed": cfg.seed, "progress": progress}
    examples, _ = gather(scan, candidates, decode, **kw)
    if cfg.latents is not None:
        return examples
    rng = np.random.default_rng(cfg.seed)
    usable = [
        ex
        for ex in examples
        if len(ex.test.tokens) >= cfg.n_test and len(ex.negative.tokens) >= cfg.n_test and ex.train.tokens
    ]
    usable = [usable[i] for i in np.sort(rng.permutation(len(usable))[: cfg.n_latents])]
    if len(usable) < 2:
        raise ValueError(
            f"only {len(usable)} of {len(candidates)} candidate latents fire on {cfg.n_test}+ distinct contexts in "
            f"the first {cfg.tokens:,} tokens of the store; scan more (--tokens) or lower --n-test"
        )
    return usable


def score_all(
    name: str,
    judge: Judge,
    embedder: Embedder | None,
    examples: Sequence[LatentExamples],
    explained: Sequence[Explained],
    control: np.ndarray,
    cfg: AutointerpConfig,
    rng: np.random.Generator,
) -> tuple[list[Score], list[Score]]:
    """(scores with each latent's explanation, scores with its control explanation) of one scorer; both see
    the same samples, and all are asked of the judge in one call."""
    own = [e.text for e in explained]
    other = [own[int(j)] for j in control]
    n = len(examples)
    if name == "embedding":
        embed = embedder if embedder is not None else default_embedder()
        out = score_embedding(embed, [*zip(own, examples, strict=True), *zip(other, examples, strict=True)])
        return out[:n], out[n:]
    if name == "detection":
        samples = [detection_samples(ex, rng) for ex in examples]
    elif name == "fuzzing":
        samples = [fuzzing_samples(ex, cfg.threshold, rng) for ex in examples]
    else:
        raise ValueError(f"unknown scorer {name!r}; choose detection, fuzzing or embedding")
    items = [*zip(own, samples, strict=True), *zip(other, samples, strict=True)]
    out = score_classifier(judge, name, items, cfg.n_shown)
    return out[:n], out[n:]


@functools.cache
def default_embedder() -> Embedder:
    """all-MiniLM-L6-v2, the sentence embedder `saelab select` uses (the select extra)."""
    from saelab.select.baselines import MiniLMEmbedder

    return MiniLMEmbedder()


def token_texts(model_name: str) -> Callable[[Sequence[int]], list[str]]:
    """Token ids -> their texts, by the tokenizer of `model_name` (each id decoded once)."""
    from saelab.models import Model

    tokenizer = Model.load(model_name).tokenizer
    if tokenizer is None:
        raise ValueError(f"model {model_name} has no tokenizer; autointerp shows contexts as text")

    @functools.cache
    def one(i: int) -> str:
        return tokenizer.decode([i], skip_special_tokens=False)

    return lambda ids: [one(int(i)) for i in ids]


def write(result: AutointerpResult, cfg: AutointerpConfig) -> Path:
    """The result JSON at cfg.out_path(), and a copy in the SAE's dashboard report (given or found)."""
    from saelab.spliced.explain import find_report

    data = site_data.json_safe(result.to_json())
    out = cfg.out_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    report = cfg.report if cfg.report is not None else find_report(cfg.sae)
    if report is not None:
        site_data.attach(report, data)
        result.meta["report"] = str(report)
    return out
