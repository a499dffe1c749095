// gradtrace explorer: controls built from the server's schema, one request per panel update,
// the whole view in the address bar. Numbers arrive as JSON with non-finite values written
// "Infinity", "-Infinity" or "NaN" (the house convention); `num` reads them back and `arr`
// turns them into null for plotting (a gap in the line).
"use strict";

const DEBOUNCE_MS = 150;
const POLL_MS = 1500;
const TABS = ["activation", "rnn", "depth", "dynamics", "runs"];
const PANELS = {
  activation: "activation", rnn: "rnn", depth: "depth",
  map: "dynamics", bifurcation: "dynamics", basins: "dynamics", cliff: "dynamics",
  runs: "runs", run: "runs", sweeps: "runs",
};
// A control shown once and sent to two panels: bifurcation.map follows map.map.
const FOLLOW = { "bifurcation.map": "map.map" };
// Panels to fetch again (or redraw) when a control of another panel changes.
const ALSO_FETCH = { "map.map": ["bifurcation"] };
const ALSO_DRAW = { "map.r": ["bifurcation"], "map.c": ["bifurcation"] };
// Controls that only matter for some settings of others.
const SHOW_IF = {
  "rnn.activation": (v) => v["rnn.cell"] === "rnn",
  "rnn.lo": (v) => v["rnn.init"] === "eig-uniform",
  "rnn.hi": (v) => v["rnn.init"] === "eig-uniform",
  "rnn.scale": (v) => !["default", "eig-uniform"].includes(v["rnn.init"]),
  "map.r": (v) => v["map.map"] === "logistic",
  "map.c": (v) => v["map.map"] === "quadratic",
  "bifurcation.r_lo": (v) => v["map.map"] === "logistic",
  "bifurcation.r_hi": (v) => v["map.map"] === "logistic",
  "bifurcation.c_lo": (v) => v["map.map"] === "quadratic",
  "bifurcation.c_hi": (v) => v["map.map"] === "quadratic",
};
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];
const KIND_STYLE = {
  sink: { symbol: "circle", color: "#2ca02c" },
  source: { symbol: "circle-open", color: "#d62728" },
  saddle: { symbol: "x", color: "#9467bd" },
  marginal: { symbol: "diamond", color: "#ff7f0e" },
};
const BASE_LAYOUT = {
  margin: { l: 64, r: 16, t: 40, b: 84 },
  font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 12 },
  paper_bgcolor: "#ffffff",
  plot_bgcolor: "#fbfbfd",
  legend: { orientation: "h", yanchor: "top", y: -0.25, x: 0 },
  hovermode: "closest",
};
const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

const explorer = {
  schema: null, values: {}, defaults: {}, tab: "activation",
  last: {}, updates: {}, failures: {}, timers: {}, controllers: {}, seqs: {}, fetched: {},
};
window.explorer = explorer;

// ------------------------------------------------------------------ numbers
const NON_FINITE = { Infinity: Infinity, "-Infinity": -Infinity, NaN: NaN };

function num(v) {
  if (typeof v === "string" && v in NON_FINITE) return NON_FINITE[v];
  return v;
}

function arr(values) {
  return values.map((v) => (Array.isArray(v) ? arr(v) : finite(num(v))));
}

function finite(v) {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function fmt(v) {
  v = num(v);
  if (v === null || v === undefined) return "none";
  if (typeof v !== "number") return String(v);
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "Infinity";
  if (v === -Infinity) return "-Infinity";
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  return String(Number(v.toPrecision(4)));
}

function finiteOf(...lists) {
  return lists.flat(2).map(num).filter((v) => typeof v === "number" && Number.isFinite(v));
}

// A linear axis of log10 values labelled as powers of ten: a log axis that never underflows.
function decadeAxis(values, title) {
  const v = finiteOf(values);
  let lo = v.length ? Math.min(...v) : -1;
  let hi = v.length ? Math.max(...v) : 1;
  if (hi - lo < 1) { lo -= 0.5; hi += 0.5; }
  const span = hi - lo;
  const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
  const step = steps.find((s) => span / s <= 8) || 10 ** Math.ceil(Math.log10(span / 8));
  const tickvals = [];
  for (let e = Math.ceil(lo / step) * step; e <= hi + 1e-9; e += step) tickvals.push(e);
  const ticktext = tickvals.map((e) => (e === 0 ? "1" : e === 1 ? "10" : `10<sup>${e}</sup>`));
  const pad = 0.05 * span;
  return { title: { text: title }, tickvals, ticktext, range: [lo - pad, hi + pad], zeroline: false };
}

function draw(id, traces, layout) {
  Plotly.react(id, traces, { ...BASE_LAYOUT, ...layout }, CONFIG);
}

function show(panel, items) {
  const list = document.getElementById(`numbers-${panel}`);
  list.replaceChildren(...items.map(([key, label, value]) => {
    const box = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.id = `num-${panel}-${key}`;
    dd.dataset.value = JSON.stringify(value === undefined ? null : value);
    dd.textContent = fmt(value);
    box.append(dt, dd);
    return box;
  }));
}

// Text with `backticked` names set as code, never as HTML.
function words(element, text) {
  element.replaceChildren(...String(text).split("`").map((part, i) => {
    if (i % 2 === 0) return document.createTextNode(part);
    const code = document.createElement("code");
    code.textContent = part;
    return code;
  }));
}

// ------------------------------------------------------------------ state and address
function key(panel, name) { return `${panel}.${name}`; }

function readAddress() {
  const query = new URLSearchParams(window.location.search);
  explorer.tab = TABS.includes(query.get("tab")) ? query.get("tab") : "activation";
  for (const [k, v] of Object.entries(explorer.defaults)) {
    explorer.values[k] = query.has(k) ? query.get(k) : v;
  }
  document.getElementById("live").checked = query.get("live") !== "0";
}

function writeAddress() {
  const query = new URLSearchParams();
  query.set("tab", explorer.tab);
  for (const [k, v] of Object.entries(explorer.values)) {
    if (v !== explorer.defaults[k]) query.set(k, v);
  }
  if (!document.getElementById("live").checked) query.set("live", "0");
  window.history.replaceState(null, "", `${window.location.pathname}?${query}`);
}

function queryOf(panel) {
  const query = new URLSearchParams();
  for (const spec of explorer.schema[panel]) {
    const k = key(panel, spec.name);
    const value = explorer.values[FOLLOW[k] || k];
    if (value !== explorer.defaults[FOLLOW[k] || k]) query.set(spec.name, value);
  }
  return query.toString();
}

// ------------------------------------------------------------------ controls
function sliderValue(spec, raw) {
  if (!spec.log) return raw;
  return String(Number((10 ** Number(raw)).toPrecision(3)));
}

function makeControl(panel, spec) {
  const k = key(panel, spec.name);
  const row = document.createElement("label");
  row.className = "control";
  row.dataset.key = k;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = spec.label;
  const out = document.createElement("output");
  let input;
  if (spec.kind === "choice" || spec.kind === "text") {
    input = document.createElement("select");
    for (const c of spec.choices || []) input.append(new Option(c, c));
    if (spec.kind === "text") input.append(new Option("(first)", ""));
  } else if (spec.kind === "bool") {
    input = document.createElement("input");
    input.type = "checkbox";
  } else {
    input = document.createElement("input");
    const wide = spec.kind === "int" && spec.hi - spec.lo > 2000;
    input.type = wide ? "number" : "range";
    if (spec.log) {
      input.min = Math.log10(spec.lo); input.max = Math.log10(spec.hi); input.step = 0.01;
    } else {
      input.min = spec.lo; input.max = spec.hi; input.step = spec.step;
    }
  }
  input.id = `control-${panel}-${spec.name}`;
  input.name = spec.name;
  const changed = () => {
    let value;
    if (spec.kind === "bool") value = input.checked ? "true" : "false";
    else if (input.type === "range") value = sliderValue(spec, input.value);
    else value = input.value;
    explorer.values[k] = value;
    out.textContent = value;
    writeAddress();
    refreshVisibility();
    schedule(panel);
    (ALSO_FETCH[k] || []).forEach((p) => schedule(p));
    (ALSO_DRAW[k] || []).forEach((p) => redraw(p));
  };
  input.addEventListener("input", changed);
  input.addEventListener("change", changed);
  row.append(name, input, out);
  return row;
}

function setControl(k) {
  const row = document.querySelector(`.control[data-key="${k}"]`);
  if (!row) return;
  const input = row.querySelector("input, select");
  const value = explorer.values[k];
  const [panel, name] = k.split(".");
  const spec = explorer.schema[panel].find((s) => s.name === name);
  if (spec.kind === "bool") input.checked = value === "true";
  else if (input.type === "range" && spec.log) input.value = Math.log10(Number(value));
  else if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === value)) {
    input.append(new Option(value, value));
    input.value = value;
  } else input.value = value;
  row.querySelector("output").textContent = value === "" ? "" : value;
}

function setOptions(panel, name, options) {
  const k = key(panel, name);
  const input = document.getElementById(`control-${panel}-${name}`);
  const now = [...input.options].map((o) => o.value).join("\n");
  const wanted = [...options, ""];
  if (now !== wanted.join("\n")) {
    input.replaceChildren(...options.map((o) => new Option(o, o)), new Option("(first)", ""));
  }
  if (!wanted.includes(explorer.values[k])) input.append(new Option(explorer.values[k], explorer.values[k]));
  input.value = explorer.values[k];
}

function refreshVisibility() {
  for (const [k, rule] of Object.entries(SHOW_IF)) {
    const row = document.querySelector(`.control[data-key="${k}"]`);
    if (row) row.hidden = !rule(explorer.values);
  }
}

function buildControls() {
  for (const form of document.querySelectorAll("form.controls")) {
    const panel = form.dataset.panel;
    form.addEventListener("submit", (e) => e.preventDefault());
    for (const spec of explorer.schema[panel]) {
      if (FOLLOW[key(panel, spec.name)]) continue;
      form.append(makeControl(panel, spec));
      setControl(key(panel, spec.name));
    }
  }
  refreshVisibility();
}

// ------------------------------------------------------------------ requests
function schedule(panel, delay = DEBOUNCE_MS) {
  clearTimeout(explorer.timers[panel]);
  explorer.timers[panel] = setTimeout(() => {
    explorer.timers[panel] = null;
    update(panel);
  }, delay);
}

// Draw `panel` again from its last answer (a marker that follows another panel's control).
function redraw(panel) {
  clearTimeout(explorer.timers[`draw-${panel}`]);
  explorer.timers[`draw-${panel}`] = setTimeout(() => {
    if (explorer.last[panel]) DRAW[panel](explorer.last[panel]);
  }, DEBOUNCE_MS);
}

// No update of `panel` waiting or under way (the tests wait for this).
explorer.idle = (panel) => !explorer.timers[panel] && !explorer.controllers[panel];

function showError(panel, message) {
  const box = document.getElementById(`error-${panel}`);
  const card = box.closest(".card");
  if (message === null) {
    box.hidden = true;
    box.replaceChildren();
    card.classList.remove("failed");
    return;
  }
  words(box, message);
  box.prepend(document.createTextNode("The server could not update this panel: "));
  box.append(document.createTextNode(" The last good results stay on the page."));
  box.hidden = false;
  card.classList.add("failed");
  explorer.failures[panel] = (explorer.failures[panel] || 0) + 1;
}

async function update(panel) {
  if (!PANEL_READY[panel]()) return;
  if (explorer.controllers[panel]) explorer.controllers[panel].abort();
  const controller = new AbortController();
  explorer.controllers[panel] = controller;
  const seq = (explorer.seqs[panel] = (explorer.seqs[panel] || 0) + 1);
  const card = document.querySelector(`.card[data-panel="${panel}"]`);
  card.classList.add("busy");
  let response, body;
  let failure = null;
  try {
    response = await fetch(`/api/${panel}?${queryOf(panel)}`, { signal: controller.signal });
    body = await response.json();
  } catch (err) {
    if (err.name === "AbortError") return;  // a newer update of this panel took over
    failure = `the server did not answer (${err.message}).`;
  }
  if (seq !== explorer.seqs[panel]) return;
  card.classList.remove("busy");
  explorer.fetched[panel] = true;
  if (failure === null && !response.ok) {
    failure = body && body.error ? body.error : `HTTP ${response.status}.`;
  }
  if (failure === null) {
    try {
      DRAW[panel](body);
      explorer.last[panel] = body;
      showError(panel, null);
    } catch (err) {
      failure = `the page could not draw the answer (${err.message}).`;
    }
  }
  if (failure !== null) showError(panel, failure);
  explorer.updates[panel] = (explorer.updates[panel] || 0) + 1;
  explorer.controllers[panel] = null;
}

function showTab(tab) {
  explorer.tab = tab;
  for (const section of document.querySelectorAll("section.tab")) {
    section.hidden = section.dataset.tab !== tab;
  }
  for (const button of document.querySelectorAll("nav button")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === tab));
  }
  writeAddress();
  for (const [panel, owner] of Object.entries(PANELS)) {
    if (owner === tab && !explorer.fetched[panel]) update(panel);
  }
  // Plotly sizes a plot drawn in a hidden tab to a default width: fit them now.
  for (const plot of document.querySelectorAll(`#tab-${tab} .plot`)) {
    if (plot.data) Plotly.Plots.resize(plot);
  }
}

// ------------------------------------------------------------------ drawing, one per panel
const DRAW = {};
const ALWAYS = () => true;
const PANEL_READY = {
  activation: ALWAYS, rnn: ALWAYS, depth: ALWAYS, map: ALWAYS, bifurcation: ALWAYS,
  basins: ALWAYS, cliff: ALWAYS, runs: ALWAYS,
  run: () => Boolean(explorer.last.runs && explorer.last.runs.runs.length),
  sweeps: () => Boolean(explorer.last.runs && explorer.last.runs.store),
};

DRAW.activation = (d) => {
  const x = d.grid;
  const values = finiteOf(d.phi, d.dphi);
  const lo = Math.min(...values), hi = Math.max(...values), pad = 0.15 * (hi - lo || 1);
  draw("plot-activation-curves", [
    { x, y: arr(d.phi), name: "phi(x)", line: { color: COLORS[0], width: 2.5 } },
    { x, y: arr(d.dphi), name: "phi'(x)", line: { color: COLORS[1], width: 2.5 } },
    { x, y: arr(d.tangent), name: "tangent at x0", line: { color: "#555", dash: "dash", width: 1.5 } },
    { x: [d.x0], y: [num(d.phi_x0)], name: "x0", mode: "markers", marker: { size: 10, color: COLORS[0] } },
  ], {
    title: { text: `${d.activation}: phi, phi' and the tangent at x0 = ${fmt(d.x0)}` },
    xaxis: { title: { text: "x (pre-activation)" } },
    yaxis: { title: { text: "value" }, range: [lo - pad, hi + pad] },
  });
  const best = d.powers.map((m) => m * Math.log10(d.gamma));
  draw("plot-activation-power", [
    { x: d.powers, y: arr(d.log10_power), name: "phi'(x0)^n", mode: "lines+markers", line: { color: COLORS[1] } },
    { x: d.powers, y: arr(best), name: "gamma^n (the best case)", line: { color: "#555", dash: "dot" } },
  ], {
    title: { text: "the repeated product phi'(x0)^n" },
    xaxis: { title: { text: "n (factors of phi'(x0))" } },
    yaxis: decadeAxis([d.log10_power, best], "phi'(x0)^n (log scale)"),
  });
  show("activation", [
    ["phi_x0", "phi(x0)", d.phi_x0],
    ["dphi_x0", "phi'(x0)", d.dphi_x0],
    ["gamma", "gamma = sup |phi'|", d.gamma],
    ["power_n", `phi'(x0)^${d.n}`, d.power_n],
    ["log10_power_n", `log10 phi'(x0)^${d.n}`, d.log10_power_n],
  ]);
};

function circle(radius, name, style) {
  const t = Array.from({ length: 181 }, (_, i) => (2 * Math.PI * i) / 180);
  return {
    x: t.map((a) => radius * Math.cos(a)), y: t.map((a) => radius * Math.sin(a)),
    name, mode: "lines", line: style, hoverinfo: "name",
  };
}

DRAW.rnn = (d) => {
  const k = d.k, T = d.steps, traces = [];
  if (d.log10_c_each) {
    d.log10_c_each.forEach((row, b) => traces.push({
      x: k, y: arr(row), name: "each sequence", legendgroup: "each", showlegend: b === 0,
      line: { color: "rgba(31,119,180,0.35)", width: 1 },
    }));
  }
  traces.push({
    x: k, y: arr(d.log10_c), name: d.log10_c_each ? "c(k), mean of log10 over the batch" : "c(k) measured",
    line: { color: COLORS[0], width: 2.5 },
  });
  traces.push({ x: k, y: arr(d.bound_log10), name: `bound ${d.bound}`, line: { color: COLORS[3], dash: "dash", width: 1.5 } });
  if (d.log10_cell_path) {
    traces.push({ x: k, y: arr(d.log10_cell_path), name: "LSTM cell path, prod diag(f_t)", line: { color: COLORS[2], width: 1.5 } });
  }
  const curve = finiteOf(d.log10_c, d.log10_c_each || [], d.log10_cell_path || []);
  const cLo = Math.min(...curve, 0), cHi = Math.max(...curve, 0);
  const bound = finiteOf(d.bound_log10).filter((v) => v > cLo - 5 && v < cHi + 5);
  const axis = decadeAxis([curve, bound], "c(k) = ||dh_T/dh_k|| (log scale)");
  const start = T - d.horizon;
  draw("plot-rnn-curve", traces, {
    title: { text: `${d.cell}, H = ${d.hidden_size}, T = ${T}: ${d.verdict}` },
    xaxis: { title: { text: "k (the gradient flows from step T back to step k)" }, range: [0, Math.max(T - 1, 1)] },
    yaxis: axis,
    shapes: d.horizon > 0 ? [{
      type: "rect", xref: "x", yref: "paper", x0: Math.max(start, 0), x1: T - 1, y0: 0, y1: 1,
      fillcolor: "rgba(44,160,44,0.08)", line: { width: 0 },
    }] : [],
    annotations: d.horizon > 0 ? [{
      xref: "x", yref: "paper", x: T - 1, y: 1, xanchor: "right", yanchor: "bottom",
      text: `memory horizon: ${d.horizon} steps`, showarrow: false, font: { color: "#2ca02c" },
    }] : [],
  });
  const spectrum = [];
  d.blocks.forEach((b, i) => {
    spectrum.push({
      x: arr(b.eigenvalues.re), y: arr(b.eigenvalues.im), mode: "markers", name: `eigenvalues of ${b.name}`,
      marker: { size: 6, color: COLORS[i % COLORS.length] },
    });
  });
  d.blocks.forEach((b, i) => {
    spectrum.push({
      x: arr(b.singular_values), y: b.singular_values.map(() => 0), mode: "markers",
      name: `singular values of ${b.name}`,
      marker: { size: 11, symbol: "line-ns-open", color: COLORS[i % COLORS.length] },
    });
  });
  if (d.circle !== null) spectrum.push(circle(d.circle, `|lambda| = 1/gamma = ${fmt(d.circle)}`, { color: COLORS[3], dash: "dash", width: 1.5 }));
  spectrum.push(circle(1, "|lambda| = 1", { color: "#999", dash: "dot", width: 1 }));
  draw("plot-rnn-spectrum", spectrum, {
    title: { text: "W_hh in the complex plane" },
    xaxis: { title: { text: "Re lambda (singular values on the real axis)" }, zeroline: true },
    yaxis: { title: { text: "Im lambda" }, scaleanchor: "x", zeroline: true },
    showlegend: true,
    margin: { l: 56, r: 16, t: 40, b: 104 },
    legend: { orientation: "h", yanchor: "top", y: -0.2, x: 0, font: { size: 11 } },
  });
  const K = d.lyapunov ? d.lyapunov.length : 0;
  draw("plot-rnn-lyapunov", [
    { x: Array.from({ length: K }, (_, i) => i + 1), y: arr(d.lyapunov || []), mode: "lines+markers", name: "lambda_i", line: { color: COLORS[4] } },
  ], {
    title: { text: "Lyapunov spectrum of the Jacobian product" },
    xaxis: { title: { text: "i (exponent, largest first)" }, dtick: K > 12 ? 4 : 1 },
    yaxis: { title: { text: "lambda_i (nats per step)" }, zeroline: true, zerolinecolor: "#888" },
    showlegend: false,
  });
  words(document.getElementById("words-rnn"), `${d.verdict}: ${d.note}`);
  document.getElementById("command-rnn").textContent = d.command;
  show("rnn", [
    ["verdict", "verdict", d.verdict],
    ["rate_per_step", "rate (decades per step)", d.rate_per_step],
    ["horizon", `memory horizon (steps of ${T})`, d.horizon],
    ["lyapunov_max", "top Lyapunov exponent (nats/step)", d.lyapunov_max],
    ["gamma", "gamma = sup |phi'|", d.gamma],
    ["sigma_max", "sigma_max(W_hh)", d.sigma_max],
    ["spectral_radius", "rho(W_hh)", d.spectral_radius],
    ["eigen_prediction", "eigenvalue criterion", d.eigen_prediction],
  ]);
};

DRAW.depth = (d) => {
  draw("plot-depth-norms", [
    { x: d.layer, y: arr(d.log10_grad), name: "||dL/dy_l|| measured", mode: "lines+markers", line: { color: COLORS[0], width: 2.5 } },
    { x: d.layer, y: arr(d.bound_log10), name: "bound", line: { color: COLORS[3], dash: "dash" } },
  ], {
    title: { text: `${d.layer.length - 1} layers: ${d.verdict}` },
    xaxis: { title: { text: "layer l (0 is the input, L the output)" } },
    yaxis: decadeAxis([d.log10_grad, d.bound_log10], "||dL/dy_l|| (log scale)"),
  });
  const layers = d.sigma_max.map((_, i) => i + 1);
  draw("plot-depth-sigma", [
    { x: layers, y: arr(d.sigma_max), type: "bar", name: "sigma_max(W_l)", marker: { color: COLORS[4] } },
    { x: [0.5, layers.length + 0.5], y: [1 / d.gamma, 1 / d.gamma], name: "1/gamma", mode: "lines", line: { color: COLORS[3], dash: "dash" } },
  ], {
    title: { text: "largest singular value of each layer" },
    xaxis: { title: { text: "layer l" } },
    yaxis: { title: { text: "sigma_max(W_l)" }, rangemode: "tozero" },
  });
  document.getElementById("command-depth").textContent = d.command;
  const g = d.log10_grad;
  show("depth", [
    ["verdict", "verdict", d.verdict],
    ["rate_per_layer", "rate (decades per layer)", d.rate_per_layer],
    ["gamma", "gamma = sup |phi'|", d.gamma],
    ["log10_output", "log10 ||dL/dy_L|| (output)", g[g.length - 1]],
    ["log10_input", "log10 ||dL/dy_0|| (input)", g[0]],
  ]);
};

DRAW.map = (d) => {
  const o = arr(d.orbit), cx = [o[0]], cy = [o[0]];
  for (let t = 0; t + 1 < o.length; t++) { cx.push(o[t], o[t + 1]); cy.push(o[t + 1], o[t + 1]); }
  const win = [d.curve.x[0], d.curve.x[d.curve.x.length - 1]];
  const traces = [
    { x: win, y: win, name: "y = x", mode: "lines", line: { color: "#999", dash: "dot", width: 1 } },
    { x: d.curve.x, y: arr(d.curve.y), name: `f(x) = ${d.formula}`, line: { color: COLORS[0], width: 2.5 } },
  ];
  if (d.iterate.n > 1) traces.push({ x: d.iterate.x, y: arr(d.iterate.y), name: `f^${d.iterate.n}`, line: { color: COLORS[4], width: 1.5 } });
  traces.push({ x: cx, y: cy, name: "cobweb of x0", mode: "lines", line: { color: COLORS[1], width: 1 } });
  for (const [kind, style] of Object.entries(KIND_STYLE)) {
    const pts = d.fixed_points.filter((p) => p.kind === kind).map((p) => num(p.points[0]));
    if (pts.length) traces.push({ x: pts, y: pts, name: `${kind} fixed point`, mode: "markers", marker: { size: 11, symbol: style.symbol, color: style.color, line: { width: 2 } } });
  }
  const ys = finiteOf(d.curve.y, d.orbit);
  draw("plot-map-cobweb", traces, {
    title: { text: `cobweb of f(x) = ${d.formula}` },
    xaxis: { title: { text: "x_t" }, range: win },
    yaxis: { title: { text: "x_(t+1)" }, range: [Math.min(...ys, win[0]), Math.max(...ys, win[1])] },
  });
  draw("plot-map-orbit", [
    { x: o.map((_, t) => t), y: o, name: "x_t", mode: "lines+markers", marker: { size: 4 }, line: { color: COLORS[1] } },
  ], {
    title: { text: `the orbit of x0 = ${fmt(d.orbit[0])}` },
    xaxis: { title: { text: "t (step)" } },
    yaxis: { title: { text: "x_t" } },
    showlegend: false,
  });
  words(document.getElementById("words-map"), `The orbit of x0 ${d.fate}.`);
  const list = document.getElementById("fixed-map");
  list.replaceChildren(...d.fixed_points.map((p, i) => {
    const item = document.createElement("li");
    item.id = `fixed-map-${i}`;
    item.dataset.value = JSON.stringify(p.points[0]);
    item.dataset.kind = p.kind;
    item.textContent = `fixed point x* = ${fmt(p.points[0])}: ${p.kind}, f'(x*) = ${fmt(p.multiplier)}`;
    return item;
  }));
  show("map", [
    ["param", d.map === "logistic" ? "r" : "c", d.param],
    ["lyapunov", "Lyapunov exponent (nats/step)", d.lyapunov],
    ["fixed_points", "fixed points in the window", d.fixed_points.length],
    ["attractor_period", "period of the attractor", d.attractor ? d.attractor.points.length : null],
  ]);
};

// The attractor as a density image (states binned by value, per parameter): thousands of
// points drawn as one heatmap instead of one SVG marker each.
const BIFURCATION_BINS = 240;

DRAW.bifurcation = (d) => {
  const states = arr(d.states);
  const seen = finiteOf(states);
  const lo = seen.length ? Math.min(...seen) : 0, hi = seen.length ? Math.max(...seen) : 1;
  const width = (hi - lo) / BIFURCATION_BINS || 1;
  const bins = Array.from({ length: BIFURCATION_BINS }, (_, i) => lo + (i + 0.5) * width);
  const z = bins.map(() => new Array(d.params.length).fill(null));
  states.forEach((row, j) => row.forEach((v) => {
    if (v === null) return;
    const i = Math.min(BIFURCATION_BINS - 1, Math.floor((v - lo) / width));
    z[i][j] = (z[i][j] || 0) + 1;
  }));
  const param = Number(explorer.values[d.map === "logistic" ? "map.r" : "map.c"]);
  const letter = d.map === "logistic" ? "r" : "c";
  draw("plot-bifurcation", [
    {
      type: "heatmap", x: arr(d.params), y: bins, z, name: "attractor", showscale: false,
      colorscale: [[0, "#9ecae1"], [1, "#08306b"]],
      hovertemplate: `${letter} = %{x:.4f}<br>x = %{y:.4f}<br>%{z} of the kept states<extra></extra>`,
    },
    { x: [param, param], y: [lo, hi], mode: "lines", name: `${letter} = ${fmt(param)} (the map above)`, line: { color: COLORS[3], width: 2 } },
  ], {
    title: { text: `bifurcation diagram of the ${d.map} map` },
    xaxis: { title: { text: letter } },
    yaxis: { title: { text: "states visited after the transient" } },
  });
};

DRAW.basins = (d) => {
  const K = d.attractors.length;
  const palette = ["#d9d9d9", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d"];
  const scale = [];
  for (let i = 0; i <= K; i++) {
    const c = palette[i % palette.length];
    scale.push([i / (K + 1), c], [(i + 1) / (K + 1), c]);
  }
  const traces = [{
    type: "heatmap", x: arr(d.axis), y: arr(d.axis), z: d.labels, zmin: -1.5, zmax: K - 0.5,
    colorscale: K ? scale : [[0, palette[0]], [1, palette[0]]], showscale: false, name: "basin",
    hovertemplate: "h_1 = %{x:.3f}<br>h_2 = %{y:.3f}<br>basin %{z}<extra></extra>",
  }];
  for (const traj of d.trajectories) {
    traces.push({ x: traj.map((s) => num(s[0])), y: traj.map((s) => num(s[1])), mode: "lines", line: { color: "rgba(60,60,60,0.6)", width: 1 }, showlegend: false, hoverinfo: "skip" });
  }
  for (const [kind, style] of Object.entries(KIND_STYLE)) {
    const pts = d.fixed_points.filter((p) => p.kind === kind);
    if (pts.length) {
      traces.push({
        x: pts.map((p) => num(p.state[0])), y: pts.map((p) => num(p.state[1])), mode: "markers", name: kind,
        marker: { size: 11, symbol: style.symbol, color: style.color, line: { width: 2, color: style.color } },
      });
    }
  }
  draw("plot-basins", traces, {
    title: { text: `${K} sink${K === 1 ? "" : "s"}: each colour is one basin` },
    xaxis: { title: { text: "h_1 (initial state)" }, range: [-1, 1], constrain: "domain" },
    yaxis: { title: { text: "h_2 (initial state)" }, range: [-1, 1], scaleanchor: "x" },
  });
  const count = (kind) => d.fixed_points.filter((p) => p.kind === kind).length;
  const none = d.labels.flat().filter((l) => l === -1).length / d.labels.flat().length;
  show("basins", [
    ["sinks", "sinks", count("sink")],
    ["saddles", "saddles", count("saddle")],
    ["sources", "sources", count("source")],
    ["unassigned", "share of states reaching no sink", none],
  ]);
};

DRAW.cliff = (d) => {
  const paths = [["plain", "plain descent", COLORS[3]], ["clipped", "clipped descent", COLORS[2]]];
  const traces = [{ x: arr(d.b), y: arr(d.loss), name: "L(b)", line: { color: COLORS[0], width: 2 } }];
  for (const [k, name, color] of paths) {
    traces.push({ x: arr(d[k].params), y: arr(d[k].losses), name, mode: "lines+markers", marker: { size: 6, color }, line: { color, width: 1 } });
  }
  draw("plot-cliff-loss", traces, {
    title: { text: "the loss by the bias, and two descents on it" },
    xaxis: { title: { text: "b (bias)" }, range: [num(d.b[0]), num(d.b[d.b.length - 1])] },
    yaxis: { title: { text: "L = (h_T - target)^2 / 2" } },
  });
  const logGrad = d.grad.map((g) => { const v = num(g); return v === 0 ? -Infinity : Math.log10(Math.abs(v)); });
  draw("plot-cliff-grad", [
    { x: arr(d.b), y: arr(logGrad), name: "|dL/db|", line: { color: COLORS[1], width: 2 } },
  ], {
    title: { text: "the exact gradient |dL/db|" },
    xaxis: { title: { text: "b (bias)" } },
    yaxis: decadeAxis(logGrad, "|dL/db| (log scale)"),
    showlegend: false,
  });
  show("cliff", [
    ["peak_grad", "largest |dL/db|", Math.abs(num(d.peak.grad))],
    ["peak_b", "at b =", d.peak.b],
    ["plain_longest", "longest plain step", d.plain.longest_step],
    ["clipped_longest", "longest clipped step", d.clipped.longest_step],
    ["plain_final_loss", "final loss, plain", d.plain.final_loss],
    ["clipped_final_loss", "final loss, clipped", d.clipped.final_loss],
  ]);
};

DRAW.runs = (d) => {
  const parts = [];
  parts.push(d.folder === null ? "No folder of runs was given (start with `--runs DIR`)." :
    `${d.runs.length} run${d.runs.length === 1 ? "" : "s"} under ${d.folder}.`);
  parts.push(d.store === null ? "No results store was given (start with `--store FILE`)." : `Results store: ${d.store}.`);
  words(document.getElementById("words-runs"), parts.join(" "));
  setOptions("run", "run", d.runs);
  document.querySelector('.card[data-panel="run"]').hidden = d.runs.length === 0;
  document.querySelector('.card[data-panel="sweeps"]').hidden = d.store === null;
  if (!explorer.fetched.run && d.runs.length) update("run");
  if (!explorer.fetched.sweeps && d.store !== null) update("sweeps");
};

DRAW.run = (d) => {
  setOptions("run", "layer", d.layers);
  // "(first)" chooses on the server: say which run and layer that is.
  document.querySelector('.control[data-key="run.run"] output').textContent = d.run;
  document.querySelector('.control[data-key="run.layer"] output').textContent = d.layer;
  const h = d.heatmap;
  draw("plot-run-heatmap", [{
    type: "heatmap", x: h.boundaries, y: h.steps, z: arr(h.log10_total), colorscale: "Viridis",
    colorbar: { title: { text: "log10 ||dL/dh_b||" } },
    hovertemplate: "b = %{x}<br>step %{y}<br>log10 = %{z:.3f}<extra></extra>",
  }], {
    title: { text: `${d.layer || "no recurrent layer"}: gradient through time` },
    xaxis: { title: { text: "boundary b (steps into the sequence)" } },
    yaxis: { title: { text: "training step" } },
  });
  const acted = d.clip.steps.filter((_, i) => d.clip.acted[i]);
  const actedNorm = d.clip.norm_before.filter((_, i) => d.clip.acted[i]);
  const traces = [
    { x: d.steps, y: arr(d.grad_norm), name: "global gradient norm", mode: "lines+markers", marker: { size: 4 }, line: { color: COLORS[0] } },
    { x: d.steps, y: arr(d.loss), name: "loss", yaxis: "y2", line: { color: "#777", width: 1 } },
  ];
  if (d.clip.steps.length) {
    traces.push({ x: d.clip.steps, y: arr(d.clip.max_norm), name: "clipping threshold", line: { color: COLORS[3], dash: "dash", width: 1 } });
    traces.push({ x: acted, y: arr(actedNorm), name: "clipped", mode: "markers", marker: { symbol: "x", size: 8, color: COLORS[3] } });
  }
  const bad = d.nonfinite.map((n) => n.step);
  if (bad.length) traces.push({ x: bad, y: bad.map(() => null), name: "non-finite step", mode: "markers" });
  draw("plot-run-norms", traces, {
    title: { text: "gradient norm, clipping and loss by training step" },
    xaxis: { title: { text: "training step" } },
    yaxis: { title: { text: "||g|| (log scale)" }, type: "log", dtick: "D2" },
    yaxis2: {
      title: { text: "loss" }, overlaying: "y", side: "right", showgrid: false, type: "linear",
      nticks: 6, tickformat: ".3g",
    },
    margin: { l: 64, r: 56, t: 40, b: 84 },
    shapes: bad.map((s) => ({ type: "line", xref: "x", yref: "paper", x0: s, x1: s, y0: 0, y1: 1, line: { color: COLORS[3], width: 2 } })),
  });
  const notes = [...d.nonfinite.map((n) => `Step ${n.step} went non-finite: ${n.note}.`), ...d.warnings.map((w) => `Warning: ${w}.`)];
  document.getElementById("notes-run").replaceChildren(...notes.map((n) => { const li = document.createElement("li"); words(li, n); return li; }));
  show("run", [
    ["records", "records read", d.records],
    ["recorded_steps", "recorded steps", d.recorded_steps],
    ["last_grad_norm", "last gradient norm", d.grad_norm.length ? d.grad_norm[d.grad_norm.length - 1] : null],
    ["clipped_fraction", "share of steps clipped", d.clip.clipped_fraction],
    ["nonfinite", "non-finite steps", d.nonfinite.length],
    ["torn", "last line still being written", d.torn_last_line ? "yes" : "no"],
  ]);
};

DRAW.sweeps = (d) => {
  setOptions("sweeps", "order", d.columns);
  document.querySelector('.control[data-key="sweeps.order"] output').textContent = d.order;
  const table = document.getElementById("table-sweeps");
  const head = document.createElement("tr");
  for (const c of d.columns) {
    const th = document.createElement("th");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = c + (c === d.order ? (explorer.values["sweeps.desc"] === "true" ? " \u25bc" : " \u25b2") : "");
    button.addEventListener("click", () => {
      const again = c === d.order;
      explorer.values["sweeps.desc"] = again && explorer.values["sweeps.desc"] !== "true" ? "true" : "false";
      explorer.values["sweeps.order"] = c;
      setControl("sweeps.order"); setControl("sweeps.desc");
      writeAddress();
      schedule("sweeps", 0);
    });
    th.append(button);
    head.append(th);
  }
  const rows = d.rows.map((r) => {
    const tr = document.createElement("tr");
    for (const v of r) { const td = document.createElement("td"); td.textContent = fmt(v); tr.append(td); }
    return tr;
  });
  table.replaceChildren(head, ...rows);
  words(document.getElementById("words-sweeps"), `Rows ${d.rows.length ? d.offset + 1 : 0} to ${d.offset + d.rows.length} of ${d.total}, sorted by \`${d.order}\`.`);
};

// ------------------------------------------------------------------ start
function poll() {
  if (explorer.tab !== "runs" || !document.getElementById("live").checked) return;
  for (const panel of ["runs", "run", "sweeps"]) {
    if (!explorer.controllers[panel] && explorer.fetched[panel]) update(panel);
  }
}

async function start() {
  try {
    const response = await fetch("/api/schema");
    explorer.schema = await response.json();
  } catch (err) {
    const box = document.getElementById("page-error");
    box.textContent = `The explorer's server did not answer (${err.message}); reload the page once it runs.`;
    box.hidden = false;
    return;
  }
  for (const [panel, specs] of Object.entries(explorer.schema)) {
    for (const spec of specs) explorer.defaults[key(panel, spec.name)] = String(spec.default);
  }
  readAddress();
  buildControls();
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  document.getElementById("live").addEventListener("change", writeAddress);
  showTab(explorer.tab);
  setInterval(poll, POLL_MS);
  explorer.ready = true;
}

if (typeof Plotly === "undefined") {
  document.addEventListener("DOMContentLoaded", () => {
    const box = document.getElementById("page-error");
    box.textContent = "Plotly.js did not load from /static/plotly.min.js; is the plotly package installed?";
    box.hidden = false;
  });
} else {
  start();
}
