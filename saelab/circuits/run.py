"""`run(cfg)`: one circuit-discovery experiment end to end (docs/methods.md, "Circuits").

Builds the task, measures the baselines, runs the chosen methods (SAE codes, exact patching, mean ablation,
attribution patching, EAP-IG, heads from attribution graphs), scores every ranking against the ground-truth
head set and writes circuits.json, one heat map per method and the ROC curves into `cfg.out`.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from saelab.circuits.calibrated import calibrated_codes
from saelab.circuits.codes import CodesResult, sae_codes, top_edges
from saelab.circuits.config import PAPER_L1, CircuitsConfig
from saelab.circuits.graph import graph_effects
from saelab.circuits.paper import paper_codes
from saelab.circuits.patching import Baselines, HeadEffects, attribution_patching, baselines, eap_ig, exact_patching
from saelab.circuits.published import published_heads
from saelab.circuits.report import heatmap, roc_plot, write_json
from saelab.circuits.scoring import best_precision_recall, ground_truth, roc_auc, roc_curve
from saelab.circuits.tasks import IoiNegative, TaskData, build_task, prefix_ids
from saelab.models import Model

GT_STREAM, SAE_STREAM, COUNT_STREAM, HELD_STREAM = 0, 1, 2, 3  # independent prompt draws: (seed, stream[, draw])


def run(cfg: CircuitsConfig) -> dict[str, Any]:
    """Run `cfg` and return what circuits.json holds. Compilation dominates a run; the persistent cache of
    `saelab.runtime.jaxcache` is the caller's choice (`saelab circuits --jax-cache`)."""
    model = Model.load(cfg.model, dtype=cfg.dtype)
    task = make_task(model, cfg, cfg.prompts, (cfg.seed, GT_STREAM))
    base = baselines(model, task)
    effects: dict[str, HeadEffects] = reused_effects(cfg, model) if cfg.effects_from else {}
    reused = sorted(effects)
    needs_patching = cfg.method in ("patching", "all") or cfg.ground_truth in ("patching", "mean-ablation")
    patch = partial(exact_patching, chunk_tokens=cfg.chunk_tokens, progress=cfg.progress)
    if needs_patching and "patching" not in effects:
        effects["patching"] = patch(model, task, base, "negative")
        if cfg.mean_ablation:
            effects["mean-ablation"] = patch(model, task, base, "mean")
    held = make_task(model, cfg, cfg.prompts, (cfg.seed, HELD_STREAM)) if cfg.held_out else task
    held_base = baselines(model, held) if cfg.held_out else base
    if cfg.method in ("attribution", "all") and "attribution" not in effects:
        effects["attribution"] = attribution_patching(model, held, held_base)
    if cfg.method in ("attribution", "all") and cfg.ig_steps and "eap-ig" not in effects:
        effects["eap-ig"] = eap_ig(model, held, held_base, cfg.ig_steps)
    if cfg.transcoders is not None and cfg.method in ("graph", "all") and "graph" not in effects:
        effects |= graph_effects(model, held, cfg)
    if cfg.held_out and needs_patching and "patching-held-out" not in effects:
        # the ceiling: exact patching itself, on prompts disjoint from the ground truth's
        effects["patching-held-out"] = patch(model, held, held_base)._replace(method="patching-held-out")
    codes = None
    if cfg.method in ("sae-codes", "all"):
        codes = run_codes(model, cfg, draw=0)
    scores = {k: np.abs(e.effect) for k, e in effects.items()}
    if codes is not None:
        scores |= {"sae-codes": codes.node.astype(float), "sae-codes-edges": codes.edge_node}
        scores |= {f"sae-codes-{name}": v.astype(float) for name, v in codes.others.items()}
    truth = truth_mask(cfg, model, effects)
    result: dict[str, Any] = {
        "config": cfg.model_dump(mode="json"),
        "model": model.info() | {"source": model.source},
        "task": _task_summary(task, base)._asdict(),
        "heads": [f"{layer}.{h}" for layer in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)],
        "scores": {k: v.ravel() for k, v in scores.items()},
        "effects": {k: {"normalised": e.effect.ravel(), "metric_drop": e.drop.ravel()} for k, e in effects.items()},
        "runtime_s": {k: e.runtime_s for k, e in effects.items()},
    }
    if cfg.effects_from:
        # runtimes of reused methods come from the earlier run: a speedup then compares two runs
        result["effects_from"] = {"file": str(cfg.effects_from), "reused": reused}
    if codes is not None:
        result["runtime_s"]["sae-codes"] = codes.runtime_s
        result["sae_codes"] = _codes_summary(codes, model.cfg.n_heads).as_json()
        if "patching" in effects:
            result["speedup_vs_patching"] = effects["patching"].runtime_s / codes.runtime_s
    if truth is not None:
        result["ground_truth"] = {
            "source": cfg.ground_truth,
            "rule": _rule(cfg),
            "n_heads": int(truth.sum()),
            "heads": [f"{a}.{b}" for a, b in zip(*np.nonzero(truth), strict=True)],
        }
        ranked = {k: v for k, v in scores.items() if not (k == cfg.ground_truth)}
        result["auc"] = {k: roc_auc(v, truth) for k, v in ranked.items()}
        result["precision_recall"] = {k: best_precision_recall(v, truth)._asdict() for k, v in ranked.items()}
        if cfg.stability_seeds and codes is not None:
            result["stability"] = stability(model, cfg, truth, first=codes).as_json()
    write_outputs(cfg, result, scores, truth)
    return result


def make_task(
    model: Model, cfg: CircuitsConfig, n: int, seed: tuple[int, ...], ioi_negative: IoiNegative = "abc"
) -> TaskData:
    if model.tokenizer is None:
        raise ValueError(f"model {cfg.model} has no tokenizer (tokenizer.json); the tasks need one")
    prefix = prefix_ids(model.tokenizer) if cfg.eot_prefix else []
    return build_task(
        cfg.task, model.tokenizer, n, seed, prefix=prefix, docstring_args=cfg.docstring_args, ioi_negative=ioi_negative
    )


def run_codes(model: Model, cfg: CircuitsConfig, draw: int) -> CodesResult:
    """The SAE-code method on draw `draw` of fresh prompt pairs (`cfg.sae_prompts`, or `cfg.count_prompts`
    for recipe="paper")."""
    if cfg.recipe == "paper":
        task = make_task(model, cfg, cfg.count_prompts, (cfg.seed, SAE_STREAM, draw), ioi_negative="paper")
        return paper_codes(model, task, PAPER_L1.get(cfg.task, 0.02), seed=cfg.seed + draw)
    task = make_task(model, cfg, cfg.sae_prompts, (cfg.seed, SAE_STREAM, draw))
    if cfg.positions == "aligned":
        count = make_task(model, cfg, cfg.count_prompts, (cfg.seed, COUNT_STREAM, draw))
        settings = dict(latents=cfg.latents, l1=cfg.l1_value, epochs=cfg.epochs, lr=cfg.lr, seed=cfg.seed + draw)
        settings |= dict(permutations=cfg.null_permutations, score=cfg.score)
        return calibrated_codes(model, task, count, **settings)[0]
    return sae_codes(
        model,
        task,
        latents=cfg.latents,
        l1=cfg.l1_value,
        epochs=cfg.epochs,
        lr=cfg.lr,
        seed=cfg.seed + draw,
        positions=cfg.positions,
        scaling=cfg.scaling,
    )


class AucSpread(NamedTuple):
    """ROC AUC of one score over several draws: each draw's, and their mean, std, min and max."""

    auc: np.ndarray  # (draws,)
    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, aucs: np.ndarray) -> AucSpread:
        return cls(aucs, aucs.mean(), aucs.std(), aucs.min(), aucs.max())


class Stability(NamedTuple):
    """The SAE-code method's AUC over `seeds` draws of training prompts and SAE seeds, node and edge-node."""

    seeds: int
    node: AucSpread  # "sae-codes"
    edge_node: AucSpread  # "sae-codes-edges"
    runtime_s: list[float]  # per draw

    def as_json(self) -> dict[str, Any]:
        """The layout circuits.json stores, keyed by method name."""
        return {
            "seeds": self.seeds,
            "sae-codes": self.node._asdict(),
            "sae-codes-edges": self.edge_node._asdict(),
            "runtime_s": self.runtime_s,
        }


def stability(model: Model, cfg: CircuitsConfig, truth: np.ndarray, first: CodesResult | None = None) -> Stability:
    """AUC of the SAE-code node (and edge-node) scores over `cfg.stability_seeds` draws of training prompts
    and SAE seeds (the paper's robustness check). `first`: the result of draw 0 when already computed."""
    runs = [first] if first is not None else []
    runs += [run_codes(model, cfg, draw=d) for d in range(len(runs), cfg.stability_seeds)]
    return Stability(
        cfg.stability_seeds,
        AucSpread.of(np.asarray([roc_auc(r.node, truth) for r in runs])),
        AucSpread.of(np.asarray([roc_auc(r.edge_node, truth) for r in runs])),
        [r.runtime_s for r in runs],
    )


def reused_effects(cfg: CircuitsConfig, model: Model) -> dict[str, HeadEffects]:
    """The patching, mean-ablation and attribution effects saved by an earlier run (`cfg.effects_from`), after
    checking that it measured the same prompts on the same model."""
    path = Path(cfg.effects_from)
    if not path.is_file():
        raise FileNotFoundError(f"effects_from: {path} does not exist (give an earlier run's circuits.json)")
    prev = json.loads(path.read_text())
    now = cfg.model_dump(mode="json")
    differ = [k for k in _SAME_PROMPTS if prev["config"].get(k) != now[k]]
    if differ:
        raise ValueError(f"effects_from: {path} was measured with other {differ}; rerun patching instead")
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    return {
        k: HeadEffects(k, np.reshape(v["normalised"], shape), np.reshape(v["metric_drop"], shape), prev["runtime_s"][k])
        for k, v in prev["effects"].items()
        if not k.startswith("graph")  # its transcoders and settings are not checked: recomputed
    }


_SAME_PROMPTS = ("task", "model", "prompts", "seed", "docstring_args", "eot_prefix", "dtype")


def truth_mask(cfg: CircuitsConfig, model: Model, effects: dict[str, HeadEffects]) -> np.ndarray | None:
    """The ground-truth head set the rankings are scored against, (n_layers, n_heads) bool, or None."""
    if cfg.ground_truth == "none":
        return None
    if cfg.ground_truth == "published":
        return published_heads(cfg.task, model.cfg)
    if cfg.ground_truth not in effects:
        raise ValueError(f"ground truth {cfg.ground_truth!r} was not measured (see mean_ablation, effects_from)")
    return ground_truth(effects[cfg.ground_truth].effect, cfg.threshold, cfg.top_n)


def write_outputs(
    cfg: CircuitsConfig, result: dict[str, Any], scores: dict[str, np.ndarray], truth: np.ndarray | None
) -> None:
    out = cfg.out
    files = {"json": "circuits.json"}
    for name, s in scores.items():
        if name in result["effects"]:  # patching methods: the signed effect (negative heads work against the task)
            s, what = np.reshape(result["effects"][name]["normalised"], s.shape), "normalised effect"
        else:
            what = "score"
        path = out / f"heads_{name}.png"
        files[f"heatmap_{name}"] = heatmap(s, f"{cfg.task}: {name} {what}", path, truth).name
    if truth is not None and result.get("auc"):
        curves = {k: (roc_curve(scores[k], truth), result["auc"][k]) for k in result["auc"]}
        files["roc"] = roc_plot(
            curves, f"{cfg.task} vs {cfg.ground_truth} ({int(truth.sum())} heads)", out / "roc.png"
        ).name
    result["files"] = files
    write_json(result, out / "circuits.json")


class TaskSummary(NamedTuple):
    """The task as circuits.json describes it: prompts, the model's accuracy and the metric's baselines."""

    name: str
    metric: str
    pairs: int
    seq: int
    accuracy: float
    negative_accuracy: float
    pos_baseline: float
    neg_baseline: float
    example: list[str]  # the first pair's texts


def _task_summary(task: TaskData, base: Baselines) -> TaskSummary:
    return TaskSummary(
        task.name,
        task.metric,
        task.n,
        task.pos.shape[1],
        base.accuracy,
        base.neg_accuracy,
        base.pos,
        base.neg,
        list(task.texts[0]),
    )


class SaeFit(NamedTuple):
    """How the SAE of the code method fit its head vectors."""

    mse_normalised: float
    l0: float
    alive_latents: int
    final_loss: float


class CodesSummary(NamedTuple):
    """What circuits.json keeps of the SAE-code method beyond its scores."""

    node_softmax: np.ndarray  # (n_layers * n_heads,) the paper's ranking
    top_edges: list[tuple[str, str, int]]  # the strongest head pairs, ("L.H", "L.H", score)
    sae: SaeFit
    runtime_s: dict[str, float]  # total, activations, sae_training
    counted_pairs: int
    distinct_codes: int

    def as_json(self) -> dict[str, Any]:
        return self._asdict() | {"sae": self.sae._asdict()}


def _codes_summary(c: CodesResult, n_heads: int) -> CodesSummary:
    return CodesSummary(
        c.node_softmax.ravel(),
        top_edges(c.edges, n_heads),
        SaeFit(c.train.mse, c.train.l0, c.train.alive, float(c.train.loss[-1])),
        {"total": c.runtime_s, "activations": c.activations_s, "sae_training": c.train_s},
        len(c.pos_codes),
        int(len(np.unique(np.concatenate([c.pos_codes.ravel(), c.neg_codes.ravel()])))),
    )


def _rule(cfg: CircuitsConfig) -> str:
    if cfg.ground_truth == "published":
        return "published GPT-2 small circuit"
    if cfg.top_n is not None:
        return f"top {cfg.top_n} heads by |normalised effect|"
    return f"|normalised effect| >= {cfg.threshold} * max"
