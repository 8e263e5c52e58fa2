"""The attribution-graph page of the report site: a graph JSON in the schema circuit-tracer's frontend (and
Neuronpedia) reads, drawn as layers (rows: embeddings at the bottom, each replaced layer, the logits on top) by
token positions (columns), nodes as marks and links as lines whose width and colour give the weight's size and
sign; hovering a feature shows its top tokens, clicking opens its dashboard.

The schema is circuit-tracer's `create_graph_files` output (circuit_tracer.frontend.graph_models): `metadata`
(slug, scan, prompt_tokens, prompt, node_threshold, ...), `nodes` (node_id, feature, layer, ctx_idx,
feature_type, activation, influence, clerp, token_prob, is_target_logit, ...) and `links` (source, target,
weight, naming node_ids). A feature node's id is `{layer}_{feature index}_{position}`; its `feature` field is a
pairing of layer and index, so the index is read from the id.

A feature links to the dashboards `saelab inspect` wrote for its layer's transcoder, found at
`site_dir/<dashboards with {layer}>` (default `L{layer}`, the names `[each_layer]` gives the layers' runs); its top
tokens come from that report's index. Layers without a report there are drawn without links.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from saelab.inspect.site import DATA, read_top_tokens

ASSETS = Path(__file__).parent / "assets"
PAGE_FILES = ("shared.js", "graph.js", "graph.css")
NOT_FEATURES = ("embedding", "logit", "mlp reconstruction error")
SCHEMA = "circuit-tracer's frontend schema (metadata.prompt_tokens, nodes[].node_id/layer/ctx_idx, links[])"


class GraphNode(BaseModel):
    """A node as the frontend reads it (further fields are kept as they are)."""

    model_config = ConfigDict(extra="allow")
    node_id: str
    feature: int
    layer: str
    ctx_idx: int
    feature_type: str
    clerp: str = ""
    influence: float | None = None
    activation: float | None = None


class GraphLink(BaseModel):
    model_config = ConfigDict(extra="allow")
    source: str
    target: str
    weight: float


class GraphMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    slug: str
    prompt_tokens: list[str]
    prompt: str = ""
    scan: str | None = None
    node_threshold: float | None = None


class GraphFile(BaseModel):
    """A whole graph file: metadata, nodes, links (qParams and other keys are kept)."""

    model_config = ConfigDict(extra="allow")
    metadata: GraphMetadata
    nodes: list[GraphNode]
    links: list[GraphLink]


def read_graph(path: str | Path) -> GraphFile:
    """The graph JSON at `path`, checked: every node where the page draws it, every link between known nodes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no graph JSON at {path}; write one with `saelab trace PROMPT --out DIR`")
    try:
        g = GraphFile.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as e:
        raise ValueError(f"{path} is not a graph in {SCHEMA}: {e}") from e
    n_pos = len(g.metadata.prompt_tokens)
    bad = [n.node_id for n in g.nodes if not 0 <= n.ctx_idx < n_pos]
    if bad:
        raise ValueError(f"{path}: nodes {bad[:5]} sit outside the {n_pos} prompt positions (ctx_idx)")
    bad = [n.node_id for n in g.nodes if n.layer != "E" and not n.layer.isdigit()]
    if bad:
        raise ValueError(f"{path}: nodes {bad[:5]} have a layer that is neither 'E' nor a number")
    ids = {n.node_id for n in g.nodes}
    bad = [(k.source, k.target) for k in g.links if k.source not in ids or k.target not in ids]
    if bad:
        raise ValueError(f"{path}: links {bad[:5]} name nodes the graph does not have")
    return g


def feature_index(node: GraphNode) -> int | None:
    """A feature node's index within its layer (from its id `{layer}_{index}_{position}`); None for the other
    kinds of node."""
    if node.feature_type in NOT_FEATURES:
        return None
    parts = node.node_id.split("_")
    if len(parts) != 3 or not parts[1].isdigit():
        raise ValueError(f"feature node id {node.node_id!r} is not '{{layer}}_{{index}}_{{position}}'")
    return int(parts[1])


def write_graph_page(graph_json_path: str | Path, site_dir: str | Path, dashboards: str = "L{layer}") -> Path:
    """Write the page of the graph at `graph_json_path` into `site_dir` (created if absent; other files there
    are kept): `graph-{slug}.html`, the shared shared.js, graph.js and graph.css, and `data/graph-{slug}.js`. Returns
    the page's path; it opens from disk or from `saelab inspect serve`."""
    g = read_graph(graph_json_path)
    site = Path(site_dir)
    if site.exists() and not site.is_dir():
        raise ValueError(f"{site} is a file; give a directory for the site")
    (site / DATA).mkdir(parents=True, exist_ok=True)
    for name in PAGE_FILES:
        shutil.copyfile(ASSETS / name, site / name)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", g.metadata.slug).strip("-.") or "graph"
    data = g.model_dump(mode="json") | {"dashboards": feature_dashboards(g, site, dashboards)}
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    (site / DATA / f"graph-{slug}.js").write_text(f'saelabData("graph-{slug}",{text});\n', encoding="utf-8")
    page = site / f"graph-{slug}.html"
    html = (ASSETS / "graph.html").read_text(encoding="utf-8")
    page.write_text(html.replace("__GRAPH__", json.dumps(f"graph-{slug}")), encoding="utf-8")
    return page


def feature_dashboards(g: GraphFile, site: Path, dashboards: str = "L{layer}") -> dict[str, dict[str, Any]]:
    """For each feature node whose layer has a report at `site/<dashboards>`: its dashboard link (relative to
    the site) and top tokens, by node_id."""
    out: dict[str, dict[str, Any]] = {}
    tokens: dict[str, dict[int, list[str]] | None] = {}
    for node in g.nodes:
        i = feature_index(node)
        if i is None:
            continue
        rel = dashboards.format(layer=node.layer)
        if rel not in tokens:
            report = site / rel
            tokens[rel] = read_top_tokens(report) if (report / DATA / "index.js").is_file() else None
        if tokens[rel] is not None:
            out[node.node_id] = {"href": f"{rel}/latent.html?i={i}", "top_tokens": tokens[rel].get(i, [])}
    return out
