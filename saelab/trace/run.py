"""`saelab trace`: a prompt's attribution graph, pruned and scored, written for circuit-tracer's frontend."""

from __future__ import annotations

import json
import re
import resource
import time
from typing import Any

from saelab.inspect.graph_page import write_graph_page
from saelab.models import Model
from saelab.models.aliases import LOCAL_ALIASES
from saelab.trace import graph as graphs
from saelab.trace import transcoders as tt
from saelab.trace.attribute import attribute
from saelab.trace.config import TraceConfig
from saelab.trace.graph_json import graph_json, write_graph_files
from saelab.trace.prune import graph_scores, prune

DEFAULT_MODEL = "smollm2-135m"


def run(cfg: TraceConfig, model: Model | None = None) -> dict[str, Any]:
    """Trace `cfg.prompt`; writes the graph files and a summary into `cfg.out` and returns the summary."""
    t0 = time.perf_counter()
    tc = tt.load(cfg.transcoders)
    model = model or Model.load(model_name(cfg, tc))
    toks = model.to_tokens(cfg.prompt)
    tokens = toks.tokens[0]
    targets = None if cfg.target is None else [target_id(model, cfg.target)]
    t1 = time.perf_counter()
    graph = attribute(
        model,
        tc,
        tokens,
        targets=targets,
        max_n_logits=cfg.max_n_logits,
        desired_logit_prob=cfg.desired_logit_prob,
        batch_size=cfg.batch_size,
        max_feature_nodes=cfg.max_feature_nodes,
        update_interval=cfg.update_interval,
        prompt=cfg.prompt,
        progress=cfg.progress,
    )
    t2 = time.perf_counter()
    pruned = prune(graph, cfg.node_threshold, cfg.edge_threshold)
    scores = graph_scores(graph)
    slug = cfg.slug or (re.sub(r"[^A-Za-z0-9]+", "-", cfg.prompt).strip("-").lower()[:48] or "graph")
    decode = lambda i: model.tokenizer.decode([i], skip_special_tokens=False)
    path = write_graph_files(graph_json(graph, pruned, slug, decode, cfg.node_threshold), cfg.out)
    saved = graphs.save(graph, cfg.out / f"{slug}.graph.npz")  # the unpruned graph, for later analyses
    page = write_graph_page(path, cfg.out)
    summary = {
        "graph": str(path),
        "unpruned": str(saved),
        "page": str(page),
        "prompt": cfg.prompt,
        "n_tokens": graph.n_pos,
        "n_features": graph.n_features,
        "n_active": graph.n_features if graph.n_active is None else graph.n_active,
        "n_nodes": graph.n_nodes,
        "logits": [
            {"token": t.token, "id": t.vocab_idx, "p": float(p)}
            for t, p in zip(graph.logit_targets, graph.logit_probabilities, strict=True)
        ],
        "kept_nodes": int(pruned.node_mask.sum()),
        "kept_edges": int(pruned.edge_mask.sum()),
        "replacement_score": scores.replacement,
        "completeness_score": scores.completeness,
        "seconds": {"attribute": round(t2 - t1, 2), "total": round(time.perf_counter() - t0, 2)},
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "model": model.cfg.name or model.source,
        "transcoders": str(cfg.transcoders),
    }
    (cfg.out / f"{slug}.summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def model_name(cfg: TraceConfig, tc: tt.TraceTranscoders) -> str:
    """`--model`, else the transcoders' model (its saelab alias when it has one), else smollm2-135m."""
    if cfg.model:
        return cfg.model
    if not tc.model_name:
        return DEFAULT_MODEL
    local = {hf.lower(): alias for alias, hf in LOCAL_ALIASES.items()}
    return local.get(tc.model_name.lower(), tc.model_name)


def target_id(model: Model, text: str) -> int:
    """The one token id of `text`, or a ValueError naming its tokens."""
    if model.tokenizer is None:
        raise ValueError(f"model {model.source} has no tokenizer to read --target {text!r}")
    ids = model.tokenizer.encode(text, add_special_tokens=False).ids
    if len(ids) != 1:
        raise ValueError(
            f"--target {text!r} is {len(ids)} tokens {ids}; give one token's text (mind a leading space, e.g. ' Paris')"
        )
    return ids[0]
