// circuitspec report page: lays out the view that circuitspec/output/interactive.py embeds.
// The graph is drawn by cytoscape.js and the plots by plotly.js, both inlined in this page.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("circuitspec-data").textContent);
  const VERDICT = { verified: "#1a9850", refuted: "#d73027", inconclusive: "#e08e0b" };
  const NONE = "#8a8f98";
  const ROLE = {
    name_mover: "#4e79a7", negative_name_mover: "#9c755f", backup_name_mover: "#76b7b2",
    s_inhibition: "#f28e2b", induction: "#59a14f", duplicate_token: "#edc948",
    previous_token: "#b07aa1", other: "#bab0ac",
  };
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s === null || s === undefined ? "" : s)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  const finite = (x) => typeof x === "number" && isFinite(x);
  const num = (x, d = 3) => (finite(x) ? x.toFixed(d) : "n/a");
  const signed = (x, d = 3) => (finite(x) ? (x >= 0 ? "+" : "") + x.toFixed(d) : "n/a");
  const interval = (ci, f = signed) => (ci && (finite(ci[0]) || finite(ci[1])) ? `[${f(ci[0])}, ${f(ci[1])}]` : "");
  const verdictWord = (v) => `<span class="${esc(v || "reported")}">${esc(v || "reported")}</span>`;
  const colourOf = (v) => VERDICT[v] || NONE;
  const roleColour = (r) => ROLE[r] || ROLE.other;
  const layerOf = (name) => { const m = /L(\d+)/.exec(String(name)) || /(\d+)/.exec(String(name)); return m ? +m[1] : 0; };
  const plotConfig = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"] };

  // --- header -----------------------------------------------------------------------
  const m = data.model || {}, t = data.task || {}, s = data.settings || {};
  document.title = `circuitspec: ${data.title}`;
  $("title").textContent = data.title;
  $("subtitle").textContent = [
    m.reference && `${m.reference}${m.name && m.name !== m.reference ? ` (${m.name})` : ""}`,
    t.n_prompts && `${t.n_prompts} prompts (${t.kind || "task"}, seed ${t.seed}, corruption ${t.corruption})`,
    s.semantics && `${s.semantics} semantics`, s.ablation && `${s.ablation} ablation`,
    s.ablation_level && `judged at ${s.ablation_level} level`, s.engine && `${s.engine} engine`,
  ].filter(Boolean).join(" · ");
  const badge = $("badge");
  if (data.passed === true || data.passed === false) {
    badge.textContent = data.passed ? "PASSED" : "FAILED";
    badge.classList.add(data.passed ? "passed" : "failed");
  } else { badge.remove(); }

  // --- tables -------------------------------------------------------------------------
  // cells: [text or html, sort key]; a sortable table sorts on click of its header.
  function table(header, rows, opts = {}) {
    const numeric = opts.numeric || [];
    const head = header.map((h, i) => `<th${numeric.includes(i) ? ' class="num"' : ""}>${esc(h)}</th>`).join("");
    const body = rows.map((r) => "<tr>" + r.map((c, i) => {
      const cell = Array.isArray(c) ? c : [esc(c), c];
      const key = cell[1] === null || cell[1] === undefined ? "" : cell[1];
      return `<td data-key="${esc(key)}"${numeric.includes(i) ? ' class="num"' : ""}>${cell[0]}</td>`;
    }).join("") + "</tr>").join("");
    return `<div class="scroll"><table class="${opts.sortable === false ? "" : "sortable"}"${opts.id ? ` id="${opts.id}"` : ""}>` +
      `<thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
  }
  document.addEventListener("click", (ev) => {
    const th = ev.target.closest("table.sortable th");
    if (!th) return;
    const tbl = th.closest("table"), col = [...th.parentNode.children].indexOf(th);
    const asc = th.getAttribute("aria-sort") !== "ascending";
    tbl.querySelectorAll("th").forEach((x) => x.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    const rows = [...tbl.tBodies[0].rows];
    const key = (r) => r.cells[col].dataset.key;
    rows.sort((a, b) => {
      const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      const c = !isNaN(nx) && !isNaN(ny) ? nx - ny : String(x).localeCompare(String(y));
      return asc ? c : -c;
    });
    rows.forEach((r) => tbl.tBodies[0].appendChild(r));
  });
  const kv = (pairs) => "<dl class=\"kv\">" + pairs.filter((p) => p[1] !== null && p[1] !== undefined && p[1] !== "")
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("") + "</dl>";

  // --- the graph ----------------------------------------------------------------------
  const groups = data.groups || [], edges = data.edges || [];
  const order = groups.slice().sort((a, b) =>
    Math.min(...a.heads.concat(a.mlps).map(layerOf), 99) - Math.min(...b.heads.concat(b.mlps).map(layerOf), 99));
  const elements = [], STEP = 165;
  order.forEach((g, i) => {
    const members = g.heads.concat(g.mlps);
    const x = i * STEP, y0 = (i % 2 ? 70 : -70) - (members.length - 1) * 18;
    elements.push({ group: "nodes", data: { id: `g:${g.id}`, name: g.id, kind: "group", role: g.role,
      colour: roleColour(g.role), label: g.id, size: members.length } });
    members.forEach((h, j) => elements.push({ group: "nodes", position: { x, y: y0 + j * 36 },
      data: { id: `h:${g.id}:${h}`, name: h, kind: "head", group: g.id, parent: `g:${g.id}`,
        colour: roleColour(g.role), label: h } }));
  });
  elements.push({ group: "nodes", position: { x: order.length * STEP, y: 0 },
    data: { id: "logits", name: "logits", kind: "output", label: "logits", colour: "#333" } });
  const maxEffect = Math.max(0.05, ...edges.map((e) => Math.abs(e.effect || 0)));
  edges.forEach((e, i) => {
    const where = [e.via, Array.isArray(e.at) ? e.at.join(",") : e.at].filter(Boolean).join(" @ ");
    elements.push({ group: "edges", data: {
      id: `e${i}`, name: e.id, index: i, source: `g:${e.from}`, target: e.to === "logits" ? "logits" : `g:${e.to}`,
      colour: colourOf(e.verdict), width: 1.5 + 9 * Math.abs(e.effect || 0) / maxEffect,
      label: `${signed(e.effect, 2)}${where ? "  " + where : ""}` } });
  });

  const cy = cytoscape({
    container: $("cy"), elements, layout: { name: "preset", fit: true, padding: 30 },
    minZoom: 0.2, maxZoom: 3,
    style: [
      { selector: "node", style: { label: "data(label)", "font-size": 13, "text-valign": "center",
        "text-halign": "center", color: "#1f2328", "text-wrap": "wrap" } },
      { selector: 'node[kind = "head"]', style: { shape: "round-rectangle", width: 64, height: 26, "font-size": 12,
        "background-color": "data(colour)", "background-opacity": 0.85, color: "#fff", "font-weight": 600 } },
      { selector: 'node[kind = "group"]', style: { shape: "round-rectangle", "background-color": "data(colour)",
        "background-opacity": 0.12, "border-color": "data(colour)", "border-width": 2, padding: 12,
        "text-valign": "top", "text-halign": "center", "font-weight": 700, "text-margin-y": -3 } },
      { selector: 'node[kind = "group"].collapsed', style: { width: 130, height: 50, "text-valign": "center",
        "background-opacity": 0.3, "text-margin-y": 0 } },
      { selector: 'node[kind = "output"]', style: { shape: "round-rectangle", width: 70, height: 32,
        "background-color": "#333", color: "#fff", "font-weight": 700 } },
      { selector: "edge", style: { width: "data(width)", "line-color": "data(colour)",
        "target-arrow-color": "data(colour)", "target-arrow-shape": "triangle", "curve-style": "bezier",
        "control-point-step-size": 60, "arrow-scale": 0.9, label: "data(label)", "font-size": 11,
        "text-background-color": "#fff", "text-background-opacity": 0.85, "text-background-padding": 2,
        "text-rotation": "autorotate", opacity: 0.9 } },
      { selector: ":selected", style: { "overlay-color": "#0969da", "overlay-opacity": 0.18, "overlay-padding": 6 } },
    ],
  });

  // Collapsing a group removes its heads (kept aside) and leaves the box as one node.
  const hidden = {};
  function setCollapsed(id, collapse) {
    const g = cy.getElementById(`g:${id}`);
    if (!g.length || !!hidden[id] === collapse) return;
    if (collapse) {
      const bb = g.boundingBox();
      hidden[id] = g.children().remove();
      g.addClass("collapsed").data("label", `${id}\n${g.data("size")} heads · click to open`)
        .position({ x: (bb.x1 + bb.x2) / 2, y: (bb.y1 + bb.y2) / 2 });
    } else {
      hidden[id].restore();
      delete hidden[id];
      g.removeClass("collapsed").data("label", id);
    }
  }
  $("expand-all").onclick = () => groups.forEach((g) => setCollapsed(g.id, false));
  $("collapse-all").onclick = () => groups.forEach((g) => setCollapsed(g.id, true));
  $("fit").onclick = () => cy.fit(undefined, 30);

  const legend = Object.entries(VERDICT).map(([v, c]) => `<span><i style="background:${c}"></i>${v}</span>`)
    .concat([`<span><i style="background:${NONE}"></i>no verdict</span>`, "<span>edge width: |effect|</span>"]);
  const roles = [...new Set(groups.map((g) => g.role).filter(Boolean))];
  $("legend").innerHTML = legend.join("") + roles.map((r) =>
    `<span><i style="background:${roleColour(r)};height:10px"></i>${esc(r)}</span>`).join("");

  // --- details panel ---------------------------------------------------------------------
  function showEdge(e) {
    const n = e.null;
    const perHead = e.per_head.length ? table(["head", "effect", "95% CI"], e.per_head.map((h) =>
      [h.head, [signed(h.effect), h.effect], [interval(h.ci), h.ci ? h.ci[0] : null]]), { numeric: [1, 2] })
      : '<p class="hint">no per-head breakdown in this file</p>';
    const sem = Object.keys(e.semantics).length ? table(["semantics", "effect"], Object.entries(e.semantics)
      .map(([k, v]) => [k, [signed(v), v]]), { numeric: [1] })
      : '<p class="hint">effects under the other semantics are not in this file</p>';
    const tmpl = e.per_template.length ? table(["template", "prompts", "effect"], e.per_template.map((r) =>
      [r.template, [String(r.n), r.n], [signed(r.effect), r.effect]]), { numeric: [1, 2] })
      : '<p class="hint">per-template values need per-prompt values in results.json</p>';
    $("details").innerHTML = `<h2>Edge ${esc(e.id)}</h2>
      <div class="big" id="detail-effect" style="color:${colourOf(e.verdict)}">effect ${signed(e.effect)}</div>
      ${kv([["95% CI", interval(e.ci)], ["verdict", verdictWord(e.verdict)], ["why", esc(e.reason)],
        ["patched metric", num(e.metric_patched)], ["from", esc(e.from)], ["to", esc(e.to)],
        ["via", esc(e.via)], ["at", esc(Array.isArray(e.at) ? e.at.join(", ") : e.at)]])}
      <h3>Random-sender null</h3>
      ${n ? kv([["kind", esc(n.kind)], ["circuits", finite(n.n) ? num(n.n, 0) : null],
        ["mean", finite(n.mean) ? signed(n.mean) : null], ["range", interval([n.low, n.high])],
        ["p-value", finite(n.p_value) ? num(n.p_value, 4) : null]])
        : '<p class="hint">no null in this file</p>'}
      <h3>Per head (each sender alone)</h3>${perHead}
      <h3>Both semantics</h3>${sem}
      <h3>Per template</h3>${tmpl}`;
  }
  function showGroup(g) {
    const out = edges.filter((e) => e.from === g.id), inn = edges.filter((e) => e.to === g.id);
    const rows = g.heads.concat(g.mlps).map((h) => {
      const cells = [h];
      out.forEach((e) => { const ph = e.per_head.find((x) => x.head === h); cells.push(ph ? [signed(ph.effect), ph.effect] : ["", null]); });
      const mv = data.minimality[h];
      cells.push([num(mv), finite(mv) ? mv : null]);
      return cells;
    });
    const header = ["head"].concat(out.map((e) => `effect on ${e.to}`), ["minimality"]);
    $("details").innerHTML = `<h2>Group ${esc(g.id)}</h2>
      ${kv([["role", esc(g.role)], ["heads", esc(g.heads.join(", "))], ["MLPs", esc(g.mlps.join(", "))],
        ["sends", esc(out.map((e) => e.to).join(", "))], ["receives from", esc(inn.map((e) => e.from).join(", "))]])}
      <h3>Members: per-head effect and minimality</h3>
      ${table(header, rows, { numeric: header.map((_, i) => i).slice(1) })}
      <p class="hint">minimality: how much the circuit loses without the head (Wang et al. 2022, section 4).</p>
      <button type="button" id="toggle-group">${hidden[g.id] ? "open the box" : "close the box"}</button>`;
    $("toggle-group").onclick = () => { setCollapsed(g.id, !hidden[g.id]); showGroup(g); };
  }
  cy.on("tap", "edge", (ev) => showEdge(edges[ev.target.data("index")]));
  cy.on("tap", "node", (ev) => {
    const d = ev.target.data();
    const gid = d.kind === "group" ? d.name : d.group;
    const g = groups.find((x) => x.id === gid);
    if (g) { if (d.kind === "group" && hidden[gid]) setCollapsed(gid, false); showGroup(g); }
  });

  // --- circuit scores ----------------------------------------------------------------------
  $("score-cards").innerHTML = (data.scores || []).map((sc) => `<div class="score ${esc(sc.verdict || "")}">
      <div class="name">${esc(sc.label)}</div><div class="value">${num(sc.value)}</div>
      <div>${interval(sc.ci, num)} ${verdictWord(sc.verdict)}</div>
      ${finite(sc.threshold) ? `<div class="why">threshold ${num(sc.threshold)}</div>` : ""}
      <div class="why">${esc(sc.reason)}</div></div>`).join("") || '<p class="hint">no circuit scores in this file</p>';
  const cn = data.circuit_null;
  $("circuit-null").innerHTML = (cn ? "<h3>Random-circuit null (faithfulness)</h3>" + kv([["circuits", num(cn.n, 0)],
    ["kind", esc(cn.kind)], ["null range", interval([cn.low, cn.high], num)], ["mean", num(cn.mean)],
    ["fraction beaten", num(cn.fraction_beaten, 2)], ["p-value", num(cn.p_value, 4)]]) : "") +
    (finite(data.f_empty) ? kv([["F(empty)", `${num(data.f_empty)} ${interval(data.f_empty_ci, num)}`]]) : "");

  // --- edges: forest plot and table ------------------------------------------------------------
  const names = edges.map((e) => e.id);
  const lo = (e) => (e.ci && finite(e.ci[0]) && finite(e.effect) ? e.effect - e.ci[0] : 0);
  const hi = (e) => (e.ci && finite(e.ci[1]) && finite(e.effect) ? e.ci[1] - e.effect : 0);
  const withNull = edges.filter((e) => e.null && finite(e.null.low) && finite(e.null.high));
  const forest = [{ type: "scatter", mode: "markers", name: "effect (95% CI)", y: names, x: edges.map((e) => e.effect),
    marker: { size: 10, color: edges.map((e) => colourOf(e.verdict)) },
    error_x: { type: "data", symmetric: false, array: edges.map(hi), arrayminus: edges.map(lo), thickness: 2, width: 6 },
    hovertemplate: "%{y}<br>effect %{x:.3f}<extra></extra>" }];
  if (withNull.length) forest.push({ type: "scatter", mode: "markers", name: "random-sender null", y: withNull.map((e) => e.id),
    x: withNull.map((e) => (e.null.low + e.null.high) / 2), marker: { size: 1, color: "#999" },
    error_x: { type: "data", symmetric: true, array: withNull.map((e) => (e.null.high - e.null.low) / 2), color: "#aaa", thickness: 8, width: 0 },
    hovertemplate: "%{y}<br>null range<extra></extra>" });
  const forestLayout = { height: 90 + 34 * edges.length, margin: { l: 260, r: 20, t: 30, b: 40 },
    title: { text: "Edge effects with 95% intervals (grey: random-sender null)", font: { size: 13 } },
    xaxis: { title: { text: "effect = (M_patched − M_clean) / (M_clean − M_corrupt)" }, zeroline: true, zerolinecolor: "#888" },
    yaxis: { autorange: "reversed", automargin: true }, showlegend: false };
  if (edges.length) Plotly.newPlot("forest", forest, forestLayout, plotConfig);
  $("edge-table").innerHTML = table(["edge", "effect", "95% CI", "null range", "p-value", "verdict"], edges.map((e) => [
    e.id, [signed(e.effect), e.effect], [interval(e.ci), e.ci ? e.ci[0] : null],
    [e.null ? interval([e.null.low, e.null.high]) : "", e.null ? e.null.low : null],
    [e.null ? num(e.null.p_value, 4) : "", e.null ? e.null.p_value : null], [verdictWord(e.verdict), e.verdict]]),
  { numeric: [1, 2, 3, 4], id: "edges-table" });

  // --- per-prompt distributions ----------------------------------------------------------------
  const jitter = (n, i) => i + 0.28 * Math.sin(12.9898 * (n + 1) * (i + 1)) ;
  const strip = (series, title, xlabel, div) => {
    const traces = series.map(([name, xs, colour], i) => ({ type: "scatter", mode: "markers", name, x: xs,
      y: xs.map((_, k) => jitter(k, i)), marker: { size: 6, opacity: 0.6, color: colour },
      hovertemplate: `${name}<br>%{x:.3f}<extra></extra>` }));
    Plotly.newPlot(div, traces, { height: 80 + 46 * series.length, margin: { l: 260, r: 20, t: 30, b: 40 },
      title: { text: title, font: { size: 13 } }, showlegend: false, xaxis: { title: { text: xlabel }, zerolinecolor: "#888" },
      yaxis: { tickvals: series.map((_, i) => i), ticktext: series.map((x) => x[0]), autorange: "reversed", zeroline: false } }, plotConfig);
  };
  const missing = [];
  const perEdge = edges.filter((e) => e.per_prompt_effect.length);
  if (perEdge.length) strip(perEdge.map((e) => [e.id, e.per_prompt_effect, colourOf(e.verdict)]),
    "Per-prompt edge effects", "(patched − clean) / mean gap, per prompt", "dist-edges");
  else missing.push("edge effects per prompt (edges[].per_prompt)");
  const mp = (data.metric || {}).per_prompt || {};
  if ((mp.clean || []).length) strip([["clean", mp.clean, "#1a9850"], ["corrupted", mp.corrupt || [], "#d73027"]],
    `Metric per prompt (${esc(data.metric.name || "metric")})`, "logit difference", "dist-metric");
  else missing.push("the metric per prompt (metric.per_prompt)");
  const sp = (data.scores || []).filter((sc) => sc.per_prompt && (sc.per_prompt.circuit || []).length);
  if (sp.length) strip(sp.flatMap((sc) => [[`${sc.label}: F(C)`, sc.per_prompt.circuit, "#4e79a7"],
    [`${sc.label}: F(M)`, sc.per_prompt.model || [], "#59a14f"]]), "Faithfulness per prompt", "metric", "dist-scores");
  else missing.push("faithfulness per prompt (circuit.*.per_prompt)");
  $("dist-missing").textContent = missing.length ? `Not in this results.json: ${missing.join("; ")}.` : "";

  // --- per template ---------------------------------------------------------------------------
  const tmplEdges = edges.filter((e) => e.per_template.length);
  if (tmplEdges.length) {
    const temps = tmplEdges[0].per_template.map((r) => r.template);
    const rows = tmplEdges.map((e) => {
      const vals = e.per_template.map((r) => r.effect).filter(finite);
      const spread = vals.length ? Math.max(...vals) - Math.min(...vals) : null;
      return [e.id].concat(e.per_template.map((r) => [signed(r.effect), r.effect]), [[num(spread), spread]]);
    });
    const counts = tmplEdges[0].per_template.map((r) => `${r.template} (${r.n})`);
    $("template-tables").innerHTML = "<h3>Edge effect per template (prompts in brackets)</h3>" +
      table(["edge"].concat(counts, ["spread"]), rows, { numeric: temps.map((_, i) => i + 1).concat([temps.length + 1]), id: "template-table" });
  } else {
    $("template-tables").innerHTML = '<p class="hint">Per-template values need metric.per_prompt and edges[].per_prompt in results.json.</p>';
  }

  // --- robustness -------------------------------------------------------------------------------
  const rob = data.robustness || [];
  if (rob.length) {
    const cols = [...new Set(rob.flatMap((r) => Object.keys(r.edge_effects)))];
    $("robustness-table").innerHTML = table(["setting", "faithfulness"].concat(cols), rob.map((r) =>
      [r.setting, [num(r.faithfulness), r.faithfulness]].concat(cols.map((c) => {
        const v = r.edge_effects[c]; return [finite(v) ? signed(v) : "", finite(v) ? v : null];
      }))), { numeric: cols.map((_, i) => i + 1).concat([cols.length + 1]), id: "robustness-rows" });
  } else { $("robustness-table").innerHTML = '<p class="hint">No robustness panel in this file.</p>'; }

  // --- run -----------------------------------------------------------------------------------------
  const tm = Object.entries(data.timings || {});
  $("run-info").innerHTML = kv(Object.entries(s).map(([k, v]) => [k, esc(v)])) +
    (tm.length ? "<h3>Timings (seconds)</h3>" + table(["stage", "seconds"], tm.map(([k, v]) => [k, [num(v, 1), v]]), { numeric: [1] }) : "");

  window.circuitspecReport = { cy, data, showEdge, showGroup, setCollapsed };
  document.body.dataset.ready = "true";
})();
