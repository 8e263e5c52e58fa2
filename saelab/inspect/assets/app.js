// saelab dashboards: loads the data shards written by saelab.inspect.site and renders the index and latent pages.
// No network and no libraries: data files are `saelabData(name, json)` scripts, so file:// works too.
"use strict";

const saelab = (() => {
  const { load, esc, show } = saelabShared;
  const fmt = (x, d = 4) => {
    if (x === null || x === undefined) return "";
    const s = Number(x).toPrecision(d);
    return s.includes(".") ? s.replace(/\.?0+(?=e|$)/, "") : s;
  };
  const chips = (tokens) => tokens.map((t) => `<span class="chip">${show(t)}</span>`).join(" ");
  const pct = (x) => (x * 100).toPrecision(3) + "%";

  function metaLine(meta) {
    const el = document.getElementById("meta");
    el.textContent = `SAE ${meta.sae} (${meta.architecture}, ${meta.d_sae} latents) · store ${meta.store} · ` +
      `${meta.hook} of ${meta.model} · ${meta.n_tokens.toLocaleString()} tokens` +
      (meta.n_over ? ` · ${meta.n_over.toLocaleString()} tokens had more than ${meta.max_active} latents firing ` +
        "(only their largest were counted)" : "");
  }

  // ---------- index ----------
  async function indexPage() {
    const [meta, idx] = await Promise.all([load("meta"), load("index")]);
    await new Promise((r) => (document.readyState === "loading" ? document.addEventListener("DOMContentLoaded", r) : r()));
    metaLine(meta);
    const n = idx.latent.length;
    const rows = Array.from({ length: n }, (_, i) => i);
    const hay = rows.map((i) => [idx.latent[i], ...idx.top_tokens[i], ...idx.top_logits[i]].join(" ").toLowerCase());
    const text = { top_tokens: idx.top_tokens.map((t) => t.join("\u0000")), top_logits: idx.top_logits.map((t) => t.join("\u0000")) };
    const body = document.querySelector("#latents tbody");
    const count = document.getElementById("count");
    const search = document.getElementById("search");
    let order = rows.slice();
    let key = "latent", dir = 1;

    function render() {
      const q = search.value.trim().toLowerCase();
      const isId = /^\d+$/.test(q);
      const shown = order.filter((i) => !q || (isId ? String(idx.latent[i]) === q || hay[i].includes(q) : hay[i].includes(q)));
      body.innerHTML = shown.map((i) => {
        const l = idx.latent[i];
        return `<tr data-latent="${l}"><td class="num"><a href="latent.html?i=${l}">${l}</a></td>` +
          `<td class="num">${pct(idx.density[i])}</td><td class="num">${fmt(idx.max[i])}</td>` +
          `<td class="num">${fmt(idx.mean[i])}</td><td>${chips(idx.top_tokens[i])}</td>` +
          `<td>${chips(idx.top_logits[i])}</td></tr>`;
      }).join("");
      count.textContent = `${shown.length} of ${n} latents`;
    }

    function sortBy(k) {
      dir = k === key ? -dir : (k === "latent" || k.startsWith("top") ? 1 : -1);
      key = k;
      const col = text[k] || idx[k];
      order = rows.slice().sort((a, b) => (col[a] < col[b] ? -dir : col[a] > col[b] ? dir : a - b));
      document.querySelectorAll("#latents th").forEach((th) => {
        th.classList.toggle("asc", th.dataset.key === key && dir === 1);
        th.classList.toggle("desc", th.dataset.key === key && dir === -1);
      });
      render();
    }

    document.querySelectorAll("#latents th").forEach((th) => th.addEventListener("click", () => sortBy(th.dataset.key)));
    search.addEventListener("input", render);
    render();
    document.body.dataset.ready = "1";
  }

  // ---------- latent ----------
  function context(vocab, ex, max, centre) {
    const [token, value, ids, acts] = ex;
    const spans = ids.map((id, j) => {
      if (id < 0) return "";
      const a = Math.max(0, Math.min(1, acts[j] / (max || 1)));
      const cls = j === centre ? "t centre" : "t";
      return `<span class="${cls}" style="background:rgba(230,126,34,${a.toFixed(3)})" title="${fmt(acts[j])}">${show(vocab[id])}</span>`;
    }).join("");
    return `<div class="ctx" data-token="${token}"><span class="val">${fmt(value, 3)}</span>${spans}</div>`;
  }

  function histogram(counts, max) {
    const w = 640, h = 140, pad = 18;
    const top = Math.max(1, ...counts);
    const bw = (w - 2 * pad) / counts.length;
    const bars = counts.map((c, i) => {
      const bh = (h - 2 * pad) * c / top;
      return `<rect x="${pad + i * bw}" y="${h - pad - bh}" width="${Math.max(bw - 1, 1)}" height="${bh}"><title>${c}</title></rect>`;
    }).join("");
    return `<svg width="${w}" height="${h}" role="img" aria-label="activation histogram">${bars}` +
      `<text x="${pad}" y="${h - 4}">0</text><text x="${w - pad}" y="${h - 4}" text-anchor="end">${fmt(max)}</text>` +
      `<text x="${pad}" y="12">${top} tokens</text></svg>`;
  }

  function table(id, rows, cell) {
    document.getElementById(id).innerHTML = rows && rows.length ? rows.map(cell).join("") : "<tr><td>(none)</td></tr>";
  }

  async function latentPage() {
    const i = Number(new URLSearchParams(location.search).get("i") || 0);
    const meta = await load("meta");
    const [vocab, idx, shard] = await Promise.all([
      load("vocab"), load("index"), load(`latents_${String(Math.floor(i / meta.shard_latents)).padStart(4, "0")}`),
    ]);
    await new Promise((r) => (document.readyState === "loading" ? document.addEventListener("DOMContentLoaded", r) : r()));
    metaLine(meta);
    const row = idx.latent.indexOf(i);
    const rec = shard[String(i)];
    document.title = `latent ${i} · saelab`;
    document.getElementById("title").textContent = `Latent ${i}`;
    document.getElementById("prev").href = `latent.html?i=${Math.max(0, i - 1)}`;
    document.getElementById("next").href = `latent.html?i=${Math.min(meta.d_sae - 1, i + 1)}`;
    if (row < 0 || !rec) {
      document.getElementById("latent").textContent = `latent ${i} is not in this report`;
      document.body.dataset.ready = "1";
      return;
    }
    const max = idx.max[row];
    const stats = [["density", `${pct(idx.density[row])} (${idx.count[row]} of ${meta.n_tokens} tokens)`],
      ["max activation", fmt(max)], ["mean activation when firing", fmt(idx.mean[row])],
      ["top tokens", chips(idx.top_tokens[row])]];
    table("stats", stats, ([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`);
    document.getElementById("hist").innerHTML = histogram(rec.hist, max);
    const logit = ([t, v]) => `<tr><td class="tok">${show(vocab[t])}</td><td>${fmt(v)}</td></tr>`;
    if (meta.logit_lens) {
      table("logits-pos", rec.pos, logit);
      table("logits-neg", rec.neg, logit);
    } else {
      table("logits-pos", [], logit);
      table("logits-neg", [], logit);
    }
    const nb = (kind) => ([j, v]) => `<tr><td><a href="latent.html?i=${j}">${j}</a></td><td>${kind} ${fmt(v, 3)}</td></tr>`;
    document.getElementById("neighbours").innerHTML = [
      ...rec.cos.map(nb("cos")), ...(rec.aip || []).map(nb("AIP"))].join("") || "<tr><td>(none)</td></tr>";
    const centre = meta.left;
    document.getElementById("top").innerHTML =
      rec.top.map((ex) => context(vocab, ex, max, centre)).join("") || "<p>never fired on the scanned tokens</p>";
    document.getElementById("intervals").innerHTML = rec.intervals.filter(([, , exs]) => exs.length).map(([lo, hi, exs]) =>
      `<div class="interval">activation in (${fmt(lo, 3)}, ${fmt(hi, 3)}]</div>` +
      exs.map((ex) => context(vocab, ex, max, centre)).join("")).join("") || "<p>no examples</p>";
    await autointerpSection(i);
    document.body.dataset.ready = "1";
  }

  // The explanation and its scores, when `saelab autointerp` attached data/autointerp.js to this report.
  async function autointerpSection(i) {
    const ai = await load("autointerp").catch(() => null);
    const rec = ai && ai.latents[String(i)];
    if (!rec) return;
    const el = document.getElementById("autointerp");
    const what = { detection: "detection accuracy", fuzzing: "fuzzing accuracy", embedding: "embedding AUROC" };
    const rows = Object.entries(rec.scores).map(([k, s]) =>
      `<tr><td>${esc(what[k] || k)}</td><td class="num">${fmt(s.score, 3)}</td><td class="num">${fmt(s.control, 3)}</td>` +
      `<td class="num">${s.n}</td><td class="num">${pct(s.answered)} / ${pct(s.control_answered)}</td></tr>`).join("");
    el.innerHTML = `<h2>Explanation <small>(by ${esc(ai.judge)})</small></h2>` +
      `<p class="explanation">${esc(rec.explanation || "(no explanation)")}</p>` +
      `<table class="scores"><tr><th>scorer</th><th>score</th><th>shuffled control</th><th>samples</th>` +
      `<th>answered (own / control)</th></tr>${rows}</table>` +
      `<p class="meta">chance is 0.5 for every scorer; the control is the same scorer given the explanation of ` +
      `<a href="latent.html?i=${rec.control_from}">latent ${rec.control_from}</a>: “${esc(rec.control_explanation)}”</p>`;
    el.hidden = false;
  }

  return { load, indexPage, latentPage };
})();
