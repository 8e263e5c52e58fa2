// saelab attribution-graph page: draws a graph in circuit-tracer's frontend schema (written by
// saelab.inspect.graph_page as `saelabData(name, json)`, so file:// works) as layers (rows) by token positions
// (columns) in plain SVG. No network and no libraries.
"use strict";

const saelabGraph = (() => {
  const { load, esc, show } = saelabShared;
  const fmt = (x, d = 3) => (x === null || x === undefined ? "" : Number(x).toPrecision(d));
  const NOT_FEATURES = ["embedding", "logit", "mlp reconstruction error"];
  const kind = (n) => (n.feature_type === "embedding" ? "embedding" : n.feature_type === "logit" ? "logit"
    : n.feature_type === "mlp reconstruction error" ? "error" : "feature");
  const featureIndex = (n) => Number(n.node_id.split("_")[1]);

  // Rows bottom to top: the embeddings ("E"), each layer in order, the logits (layer n_layers + 1).
  function rows(nodes) {
    const layers = [...new Set(nodes.filter((n) => n.layer !== "E").map((n) => Number(n.layer)))].sort((a, b) => a - b);
    const order = ["E", ...layers.map(String)];
    return new Map(order.map((l, i) => [l, i]));
  }

  function layout(g) {
    const P = g.metadata.prompt_tokens.length;
    const rowOf = rows(g.nodes);
    const cells = new Map();
    g.nodes.forEach((n, i) => {
      const key = `${n.layer}|${n.ctx_idx}`;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(i);
    });
    const widest = Math.max(1, ...[...cells.values()].map((c) => c.length));
    const colW = Math.min(260, Math.max(64, 13 * widest + 16));
    const rowH = 64, left = 64, top = 56;
    const R = rowOf.size;
    const xy = new Array(g.nodes.length);
    for (const idx of cells.values()) {
      idx.sort((a, b) => (g.nodes[b].influence ?? -1) - (g.nodes[a].influence ?? -1));
      idx.forEach((i, j) => {
        const n = g.nodes[i];
        xy[i] = [left + colW * n.ctx_idx + (j + 1) * colW / (idx.length + 1), top + (R - 1 - rowOf.get(n.layer)) * rowH + rowH / 2];
      });
    }
    return { xy, rowOf, colW, rowH, left, top, width: left + colW * P + 16, height: top + R * rowH + 40, P, R };
  }

  function mark(n, i, [x, y], link) {
    const k = kind(n);
    const cls = `node ${k}${link ? " linked" : ""}${n.is_target_logit ? " target" : ""}`;
    const at = `class="${cls}" data-i="${i}" data-node-id="${esc(n.node_id)}"`;
    if (k === "feature") {
      const c = `<circle ${at} cx="${x}" cy="${y}" r="5.5"></circle>`;
      return link ? `<a href="${esc(link.href)}">${c}</a>` : c;
    }
    if (k === "error") return `<rect ${at} x="${x - 5}" y="${y - 5}" width="10" height="10"></rect>`;
    if (k === "embedding") return `<rect ${at} x="${x - 6}" y="${y - 6}" width="12" height="12" rx="3"></rect>`;
    return `<polygon ${at} points="${x},${y - 7} ${x + 7},${y} ${x},${y + 7} ${x - 7},${y}"></polygon>`;
  }

  function svg(g, L) {
    const first = new Map();
    g.nodes.forEach((n, i) => { if (!first.has(n.node_id)) first.set(n.node_id, i); });
    const maxW = Math.max(1e-12, ...g.links.map((l) => Math.abs(l.weight)));
    const order = g.links.map((_, j) => j).sort((a, b) => Math.abs(g.links[a].weight) - Math.abs(g.links[b].weight));
    const edges = order.map((j) => {
      const l = g.links[j];
      const s = first.get(l.source), t = first.get(l.target);
      const [x1, y1] = L.xy[s], [x2, y2] = L.xy[t];
      const r = Math.abs(l.weight) / maxW;  // width and opacity by |weight|: weak edges fade into the background
      return `<line class="edge ${l.weight >= 0 ? "pos" : "neg"}" data-s="${s}" data-t="${t}" data-weight="${l.weight}" ` +
        `x1="${x1.toFixed(1)}" y1="${y1.toFixed(1)}" x2="${x2.toFixed(1)}" y2="${y2.toFixed(1)}" ` +
        `stroke-width="${(0.4 + 3.6 * r).toFixed(2)}" stroke-opacity="${(0.12 + 0.7 * r).toFixed(2)}"></line>`;
    }).join("");
    const grid = [...L.rowOf.entries()].map(([layer, r]) => {
      const y = L.top + (L.R - 1 - r) * L.rowH + L.rowH / 2;
      const name = layer === "E" ? "tokens" : r === L.R - 1 && g.nodes.some((n) => kind(n) === "logit" && n.layer === layer) ? "logits" : `L${layer}`;
      return `<line class="grid" x1="${L.left}" x2="${L.width - 16}" y1="${y}" y2="${y}"></line>` +
        `<text x="${L.left - 8}" y="${y + 4}" text-anchor="end">${name}</text>`;
    }).join("");
    const toks = g.metadata.prompt_tokens.map((t, p) => {
      const label = show(t.length > 12 ? t.slice(0, 11) + "…" : t);
      return `<text class="tok" x="${L.left + L.colW * (p + 0.5)}" y="${L.height - 12}" text-anchor="middle">${label}<title>${p}: ${show(t)}</title></text>`;
    }).join("");
    const marks = g.nodes.map((n, i) => mark(n, i, L.xy[i], kind(n) === "feature" ? g.dashboards[n.node_id] : null)).join("");
    const logits = g.nodes.map((n, i) => [n, i]).filter(([n]) => kind(n) === "logit");
    const said = logits.length <= 12 ? logits.map(([n, i]) => {  // the token each logit node stands for
      const m = /^Output "(.*)" \(p=/s.exec(n.clerp || "");
      const [x, y] = [L.xy[i][0] - 2, L.xy[i][1] - 10];  // slanted, so neighbouring logits' labels do not collide
      return m ? `<text class="tok" x="${x}" y="${y}" transform="rotate(-35 ${x} ${y})">${show(m[1])}</text>` : "";
    }).join("") : "";
    return `<svg width="${L.width}" height="${L.height}" role="img" aria-label="attribution graph">` +
      `<g class="rows">${grid}</g><g class="edges">${edges}</g><g class="nodes">${marks}</g><g>${toks}${said}</g></svg>`;
  }

  function tooltip(g, n) {
    const k = kind(n);
    const tok = g.metadata.prompt_tokens[n.ctx_idx];
    const rowsHtml = [["node", n.node_id], ["position", `${n.ctx_idx} (${show(tok)})`]];
    if (k === "feature") rowsHtml.push(["feature", `layer ${n.layer}, index ${featureIndex(n)}`], ["activation", fmt(n.activation)]);
    if (k === "error") rowsHtml.push(["error", `layer ${n.layer}`]);
    if (k === "logit") rowsHtml.push(["probability", fmt(n.token_prob)]);
    if (n.influence !== null && n.influence !== undefined) rowsHtml.push(["influence", fmt(n.influence)]);
    if (n.clerp) rowsHtml.push(["label", show(n.clerp)]);
    const d = k === "feature" ? g.dashboards[n.node_id] : null;
    if (d) rowsHtml.push(["top tokens", d.top_tokens.map((t) => `<span class="chip">${show(t)}</span>`).join("") || "(none)"]);
    else if (k === "feature") rowsHtml.push(["dashboard", "none for this layer in the site"]);
    return rowsHtml.map(([a, b]) => `<div><span class="k">${a}:</span> ${b}</div>`).join("");
  }

  async function page(name) {
    const g = await load(name);
    await new Promise((r) => (document.readyState === "loading" ? document.addEventListener("DOMContentLoaded", r) : r()));
    const m = g.metadata;
    document.title = `${m.slug} · saelab graph`;
    document.getElementById("title").textContent = `Attribution graph: ${m.slug}`;
    document.getElementById("prompt").textContent = m.prompt || m.prompt_tokens.join("");
    document.getElementById("meta").textContent = `scan ${m.scan ?? "?"}` +
      (m.node_threshold != null ? ` · node threshold ${m.node_threshold}` : "");
    document.getElementById("counts").textContent = `${g.nodes.length} nodes · ${g.links.length} edges`;
    const box = document.getElementById("graph");
    box.innerHTML = svg(g, layout(g));
    const tip = document.getElementById("tooltip");
    const lines = [...box.querySelectorAll(".edge")];
    const maxW = Math.max(1e-12, ...g.links.map((l) => Math.abs(l.weight)));
    const slider = document.getElementById("min-weight");
    const filter = () => {  // hide edges below the chosen share of the largest |weight|
      const min = Number(slider.value) / 100 * maxW;
      let shown = 0;
      lines.forEach((l) => { const on = Math.abs(Number(l.dataset.weight)) >= min; l.style.display = on ? "" : "none"; shown += on; });
      document.getElementById("shown").textContent = `${shown} edges with |weight| >= ${slider.value}% of the largest`;
    };
    slider.addEventListener("input", filter);
    filter();
    box.addEventListener("mouseover", (e) => {
      const el = e.target.closest(".node");
      if (!el) return;
      const i = Number(el.dataset.i);
      tip.innerHTML = tooltip(g, g.nodes[i]);
      tip.hidden = false;
      tip.style.left = `${e.clientX + 14}px`;
      tip.style.top = `${e.clientY + 14}px`;
      el.classList.add("hover");
      box.classList.add("focus");
      lines.forEach((l) => l.classList.toggle("lit", l.dataset.s === String(i) || l.dataset.t === String(i)));
    });
    box.addEventListener("mouseout", (e) => {
      const el = e.target.closest(".node");
      if (!el) return;
      el.classList.remove("hover");
      box.classList.remove("focus");
      tip.hidden = true;
    });
    document.body.dataset.ready = "1";
  }

  return { load, page, kinds: NOT_FEATURES };
})();
